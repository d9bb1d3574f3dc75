package relayhost

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		want    *coordinatorv1.RelayEndpoint
		wantErr string
	}{
		{in: "udp=r.example:4433,probe=r.example:4434,tcp=r.example:443,fingerprint=sha256:ab",
			want: &coordinatorv1.RelayEndpoint{Udp: "r.example:4433", ProbeUdp: "r.example:4434", Tcp: "r.example:443", CaFingerprint: "sha256:ab"}},
		{in: "tcp=[::1]:443, fingerprint=sha256:ab", want: &coordinatorv1.RelayEndpoint{Tcp: "[::1]:443", CaFingerprint: "sha256:ab"}},
		{in: "udp=r.example:4433", wantErr: "give fingerprint=sha256:HEX"},
		{in: "probe=r.example:4434,fingerprint=sha256:ab", wantErr: "give udp=HOST:PORT, tcp=HOST:PORT or both"},
		{in: "udp=r.example,fingerprint=sha256:ab", wantErr: `udp="r.example" is not HOST:PORT`},
		{in: "udp=r.example:0,fingerprint=sha256:ab", wantErr: "has no valid port"},
		{in: "udp=r.example:70000,fingerprint=sha256:ab", wantErr: "has no valid port"},
		{in: "quic=r.example:1,fingerprint=sha256:ab", wantErr: `unknown key "quic"`},
		{in: "udp", wantErr: "is not KEY=VALUE"},
		{in: "", wantErr: "is not KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEndpoint(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.True(t, proto.Equal(tt.want, got), "want %v, got %v", tt.want, got)
			back, err := ParseEndpoint(FormatEndpoint(got))
			require.NoError(t, err)
			require.True(t, proto.Equal(got, back), "FormatEndpoint writes what ParseEndpoint reads")
		})
	}
}

// TestEndpoint: the endpoint names the ports the sockets got, at the host
// given, and no TCP when none is served.
func TestEndpoint(t *testing.T) {
	for _, tcp := range []string{"127.0.0.1:0", ""} {
		h, err := Listen(Addrs{UDP: "127.0.0.1:0", ProbeUDP: "127.0.0.1:0", TCP: tcp})
		require.NoError(t, err)
		port := func(a net.Addr) string { _, p, _ := net.SplitHostPort(a.String()); return p }
		ep := h.Endpoint("relay.example", "sha256:ab")
		require.Equal(t, "relay.example:"+port(h.udp.LocalAddr()), ep.GetUdp())
		require.Equal(t, "relay.example:"+port(h.probe.LocalAddr()), ep.GetProbeUdp())
		require.NotEqual(t, ep.GetUdp(), ep.GetProbeUdp())
		if tcp == "" {
			require.Empty(t, ep.GetTcp())
		} else {
			require.Equal(t, "relay.example:"+port(h.tcp.Addr()), ep.GetTcp())
		}
		require.Equal(t, "sha256:ab", ep.GetCaFingerprint())
		require.Equal(t, "127.0.0.1:"+port(h.udp.LocalAddr()), h.Endpoint("", "").GetUdp(), "no host: the socket's")
		h.Close()
	}
}

func TestListenFails(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	_, err = Listen(Addrs{UDP: "127.0.0.1:0", ProbeUDP: taken.LocalAddr().String()})
	require.ErrorContains(t, err, "probe port")
	_, err = Listen(Addrs{UDP: "127.0.0.1:0"})
	require.ErrorContains(t, err, "give both UDP addresses")
}

// TestResetKey: the same certificate gives the same key (a restarted
// relay resets its peers' old links); another gives another.
func TestResetKey(t *testing.T) {
	load := func(dir string) tls.Certificate {
		cert, err := certs.LoadOrCreate(dir, []string{"localhost"})
		require.NoError(t, err)
		return cert
	}
	dir := t.TempDir()
	k1, err := ResetKey(load(dir))
	require.NoError(t, err)
	k2, err := ResetKey(load(dir))
	require.NoError(t, err)
	require.Equal(t, *k1, *k2)
	other, err := ResetKey(load(t.TempDir()))
	require.NoError(t, err)
	require.NotEqual(t, *k1, *other)
}
