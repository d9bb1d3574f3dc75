package mesh_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/stretchr/testify/require"
)

// TestRefused: a client without a valid token of the session, bound to its
// key, never reaches the exporter.
func TestRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(l *lab, cfg *mesh.DialConfig)
		// want is the error Dial fails with; nil means it never connects
		// and its context ends.
		want error
	}{
		{name: "no token", setup: func(l *lab, cfg *mesh.DialConfig) {
			cfg.Token = func(context.Context) (string, error) { return "", nil }
		}},
		{name: "expired token", want: mesh.ErrSessionExpired, setup: func(l *lab, cfg *mesh.DialConfig) {
			tok := l.auth.session(l.t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, -time.Minute)
			cfg.Token = func(context.Context) (string, error) { return tok, nil }
		}},
		{name: "another session's token", setup: func(l *lab, cfg *mesh.DialConfig) {
			// Valid, for this client, but for another lease on another
			// exporter: the relay puts it in that session, where board-01
			// never is.
			tok := l.auth.session(l.t, "lease-2", l.clientKey.Public().(ed25519.PublicKey), "board-02", time.Hour)
			cfg.Token = func(context.Context) (string, error) { return tok, nil }
			cfg.Exporter = "board-02"
		}},
		{name: "token bound to another key", setup: func(l *lab, cfg *mesh.DialConfig) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			cfg.Key = other
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, l, es := startEasyLab(t)
				tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
				econn := es.serve(t, tok)

				cfg := l.dialConfig(s.host("client"), tok, mesh.Auto, nil)
				tt.setup(l, &cfg)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				conn, err := mesh.Dial(ctx, cfg)
				require.Error(t, err)
				require.Nil(t, conn)
				t.Logf("refused: %v", err)
				if tt.want != nil {
					require.ErrorIs(t, err, tt.want)
				}
				require.Equal(t, mesh.PathNone, econn.Path(), "the exporter saw no connection")
			})
		})
	}
}

// TestForgedExporter: someone with the session token but not the
// exporter's key joins as the exporter; the client refuses it.
func TestForgedExporter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		easy := natType{name: "easy"}
		s := startSim(t, natTopology(easy, easy))
		l := newLab(t)
		l.startRelay(s.host("relay"), relay.Limits{}, nil)
		pinned := l.exporterKey
		_, l.exporterKey, _ = ed25519.GenerateKey(rand.Reader) // the impostor's
		es := l.startExporter(s.host("exporter"), nil)
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
		es.serve(t, tok)

		cfg := l.dialConfig(s.host("client"), tok, mesh.Auto, nil)
		cfg.ExporterKey = pinned.Public().(ed25519.PublicKey)
		_, err := mesh.Dial(t.Context(), cfg)
		require.ErrorIs(t, err, mesh.ErrExporterKey)
	})
}

// tap is the relay's socket, watched: every datagram in and out is
// searched for a marker.
type tap struct {
	net.PacketConn
	marker []byte

	mu      sync.Mutex
	bytes   int // relayed bytes seen
	leaks   int // datagrams with the marker in clear
	scanned int
}

func (t *tap) see(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.scanned++
	if len(b) > 0 && b[0] == 0x01 { // a relayed packet
		t.bytes += len(b)
	}
	if bytes.Contains(b, t.marker) {
		t.leaks++
	}
}

func (t *tap) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := t.PacketConn.ReadFrom(b)
	if err == nil {
		t.see(b[:n])
	}
	return n, a, err
}

func (t *tap) WriteTo(b []byte, a net.Addr) (int, error) {
	t.see(b)
	return t.PacketConn.WriteTo(b, a)
}

// TestRelaySeesOnlyCiphertext pushes a marker through a relayed console
// and checks that it never crossed the relay's socket in clear.
func TestRelaySeesOnlyCiphertext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const marker = "jumpmesh-marker-7f3a9c"
		easy := natType{name: "easy"}
		s := startSim(t, natTopology(easy, easy))
		l := newLab(t)
		watch := &tap{marker: []byte(marker)}
		l.startRelay(s.host("relay"), relay.Limits{}, func(pc net.PacketConn) net.PacketConn { watch.PacketConn = pc; return watch })
		es := l.startExporter(s.host("exporter"), nil)
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
		es.serve(t, tok)
		conn, sess := l.dial(s.host("client"), tok, mesh.RelayOnly)
		b := bootBoard(t, sess)
		for range 10 {
			b.echo(marker)
		}
		require.Equal(t, mesh.PathRelayUDP, conn.Path())
		watch.mu.Lock()
		defer watch.mu.Unlock()
		require.Greater(t, watch.bytes, 10*2*len(marker), "the console's bytes went through the relay")
		require.Zero(t, watch.leaks, "datagrams with the marker in clear, of %d", watch.scanned)
	})
}
