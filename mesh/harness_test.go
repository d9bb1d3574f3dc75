package mesh_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	_ "github.com/jumpmesh/jumpmesh/drivers/all"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	"github.com/jumpmesh/jumpmesh/drivers/serial"
	"github.com/jumpmesh/jumpmesh/exporter"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/netsim"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/jumpmesh/jumpmesh/test/testcert"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// boardConfig is the exporter of every test: the virtual board's power,
// console and disk (a file at the path filled in).
const boardConfig = `apiVersion: jumpmesh.dev/v1alpha1
kind: ExporterConfig
metadata: {name: board-01}
export:
  power: {type: virtual.power}
  serial: {type: virtual.serial, config: {lineDelay: 1ms}}
  storage: {type: virtual.storage, config: {path: %q, size: 16Mi}}
`

const exporterName = "board-01"

// authority mints session tokens as the coordinator does.
type authority struct {
	ring *token.Keyring
}

func newAuthority(t testing.TB) *authority {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ring := token.NewKeyring("lab")
	ring.SetKeys([]token.Key{{ID: "k1", Private: priv, Created: time.Now()}}, time.Now())
	return &authority{ring: ring}
}

// session signs a session token of lease for the client key, for ttl.
func (a *authority) session(t testing.TB, lease string, clientKey ed25519.PublicKey, exporterName string, ttl time.Duration) string {
	now := time.Now()
	tok, err := a.ring.Sign(token.Session, &token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "alice",
			ID:        lease + "-" + strconv.FormatInt(now.UnixNano(), 36),
			Audience:  jwt.ClaimStrings{token.ExporterAudience(exporterName)},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Lease:    lease,
		Client:   "alice",
		Exporter: exporterName,
		Cnf:      &token.Confirmation{JKT: token.Thumbprint(clientKey)},
	})
	require.NoError(t, err)
	return tok
}

// relayTLS makes the relay's certificate and the config peers check it
// with. Call it inside the bubble, so validity matches the virtual clock.
func relayTLS(t testing.TB) (server, peers *tls.Config) { return testcert.Pair(t, "relay.test") }

// host is what a peer needs of a machine: netsim's nodes, or loopback.
type host interface {
	ListenPacket(network, address string) (net.PacketConn, error)
	Listen(network, address string) (net.Listener, error)
	Dial(ctx context.Context, network, address string) (net.Conn, error)
	Addr() netip.Addr
}

// lab is a relay, an exporter and its client's credentials.
type lab struct {
	t        testing.TB
	auth     *authority
	relayTLS *tls.Config
	peerTLS  *tls.Config
	relay    *runningRelay
	relayAt  netip.Addr
	// The relay's ports: QUIC, the second UDP port, TCP; picked at the
	// first start, kept across restarts.
	relayPort, probePort, tcpPort int

	exporterKey ed25519.PrivateKey
	clientKey   ed25519.PrivateKey
	// resetKey outlives relay restarts, as an operator's would.
	resetKey quic.StatelessResetKey
}

func newLab(t testing.TB) *lab {
	server, peers := relayTLS(t)
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, ck, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	l := &lab{t: t, auth: newAuthority(t), relayTLS: server, peerTLS: peers, exporterKey: ek, clientKey: ck}
	rand.Read(l.resetKey[:])
	return l
}

// runningRelay is a relay serving until stopped.
type runningRelay struct {
	*relay.Relay
	stop func()
}

// startRelay serves a relay on h: QUIC and probes on UDP, TLS on TCP.
// wrap, if set, sees the relay's main UDP socket.
func (l *lab) startRelay(h host, limits relay.Limits, wrap func(net.PacketConn) net.PacketConn) *runningRelay {
	t := l.t
	r, err := relay.New(relay.Config{TLS: l.relayTLS, Tokens: l.auth.ring, Limits: limits, StatelessResetKey: &l.resetKey})
	require.NoError(t, err)
	main, err := h.ListenPacket("udp", ":"+strconv.Itoa(l.relayPort))
	require.NoError(t, err)
	second, err := h.ListenPacket("udp", ":"+strconv.Itoa(l.probePort))
	require.NoError(t, err)
	l.relayPort = main.LocalAddr().(*net.UDPAddr).Port
	l.probePort = second.LocalAddr().(*net.UDPAddr).Port
	ln, err := h.Listen("tcp", ":"+strconv.Itoa(l.tcpPort))
	require.NoError(t, err)
	l.tcpPort = ln.Addr().(*net.TCPAddr).Port
	if wrap != nil {
		main = wrap(main)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.ServeUDP(ctx, main, second) })
	wg.Go(func() { r.ServeTCP(ctx, ln) })
	var once sync.Once
	rr := &runningRelay{Relay: r, stop: func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			main.Close()
			second.Close()
		})
	}}
	t.Cleanup(rr.stop)
	l.relay, l.relayAt = rr, h.Addr()
	return rr
}

func (l *lab) relayConfig() mesh.Relay {
	at := func(port int) string { return netip.AddrPortFrom(l.relayAt, uint16(port)).String() }
	return mesh.Relay{UDP: at(l.relayPort), ProbeUDP: at(l.probePort), TCP: at(l.tcpPort), TLS: l.peerTLS}
}

// network is a peer's mesh.Network on h: its socket (wrapped by wrap, if
// set), TCP dials and its address as the local candidate.
func network(t testing.TB, h host, wrap func(net.PacketConn) net.PacketConn) mesh.Network {
	pc, err := h.ListenPacket("udp", ":0")
	require.NoError(t, err)
	if wrap != nil {
		pc = wrap(pc)
	}
	return mesh.Network{
		PacketConn: pc,
		DialTCP:    func(ctx context.Context, addr string) (net.Conn, error) { return h.Dial(ctx, "tcp", addr) },
		LocalAddrs: []netip.Addr{h.Addr()},
	}
}

// exporterSide is a running exporter behind a mesh Listener.
type exporterSide struct {
	ln  *mesh.Listener
	exp *exporter.Exporter
	wg  sync.WaitGroup
}

// newBoard builds the exporter of the virtual board.
func newBoard(t testing.TB) *exporter.Exporter {
	cfg, err := exporter.Parse("exporter.yaml", fmt.Appendf(nil, boardConfig, filepath.Join(t.TempDir(), "disk.img")))
	require.NoError(t, err)
	exp, err := exporter.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return exp
}

// startExporter builds the virtual board and listens on h.
func (l *lab) startExporter(h host, wrap func(net.PacketConn) net.PacketConn) *exporterSide {
	t := l.t
	exp := newBoard(t)
	ln, err := mesh.Listen(mesh.ListenConfig{
		Key: l.exporterKey, Name: exporterName, Tokens: l.auth.ring,
		Relay: l.relayConfig(), Network: network(t, h, wrap), Logger: testLogger(t, "exporter"),
	})
	require.NoError(t, err)
	es := &exporterSide{ln: ln, exp: exp}
	t.Cleanup(es.stop)
	return es
}

// serve joins a session and serves it until it ends.
func (es *exporterSide) serve(t testing.TB, tok string) *mesh.Conn {
	conn, err := es.ln.Join(t.Context(), tok)
	require.NoError(t, err)
	es.wg.Go(func() { es.exp.Serve(context.Background(), conn) })
	return conn
}

func (es *exporterSide) stop() {
	es.ln.Close()
	es.wg.Wait()
	es.exp.Close()
}

// dialConfig is the client's configuration on h.
func (l *lab) dialConfig(h host, tok string, path mesh.PathPolicy, wrap func(net.PacketConn) net.PacketConn) mesh.DialConfig {
	return mesh.DialConfig{
		Key: l.clientKey, Exporter: exporterName, ExporterKey: l.exporterKey.Public().(ed25519.PublicKey),
		Token: func(context.Context) (string, error) { return tok, nil },
		Relay: l.relayConfig(), Network: network(l.t, h, wrap), Path: path, Logger: testLogger(l.t, "client"),
	}
}

// dial connects a client on h and returns its session.
func (l *lab) dial(h host, tok string, path mesh.PathPolicy) (*mesh.Conn, *client.Session) {
	conn, err := mesh.Dial(l.t.Context(), l.dialConfig(h, tok, path, nil))
	require.NoError(l.t, err)
	l.t.Cleanup(func() { conn.Close() })
	return conn, client.New(conn)
}

// powerOn calls the board's power On.
func powerOn(t testing.TB, s *client.Session) {
	t.Helper()
	d, err := s.Driver(t.Context(), "power")
	require.NoError(t, err)
	require.NoError(t, power.NewClient(d).On(t.Context()))
}

// console opens the board's console.
func console(t testing.TB, s *client.Session) *client.ByteStream {
	t.Helper()
	d, err := s.Driver(t.Context(), "serial")
	require.NoError(t, err)
	con, err := serial.NewClient(d).Console(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { con.Close() })
	return con
}

// expect reads con until re matches.
func expect(t testing.TB, con io.Reader, re string) {
	t.Helper()
	_, err := serial.Expect(con, regexp.MustCompile(re), io.Discard)
	require.NoError(t, err)
}

// waitPath waits until conn is on want, or fails after limit.
func waitPath(t testing.TB, conn *mesh.Conn, want mesh.Path, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for {
		p, changed := conn.Watch()
		if p == want {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			require.Failf(t, "path did not change", "want %v, still %v after %v", want, conn.Path(), limit)
		}
	}
}

// testLogger logs to the test when MESH_LOG is set.
func testLogger(t testing.TB, who string) *slog.Logger {
	if !logOn {
		return nil
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("peer", who)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// logOn sends peers' logs to the test log: MESH_LOG=1 go test ...
var logOn = os.Getenv("MESH_LOG") != ""

// sim is a running netsim network.
type sim struct {
	t *testing.T
	n *netsim.Network
}

// startSim runs topo; call it inside the bubble.
func startSim(t *testing.T, topo netsim.Topology) *sim {
	n, err := netsim.New(topo)
	require.NoError(t, err)
	t.Cleanup(func() { n.Close() })
	return &sim{t: t, n: n}
}

// startEasyLab runs a relay and an exporter on the client and exporter
// sites of natTopology, behind NATs that let punching through; call it
// inside the bubble.
func startEasyLab(t *testing.T) (*sim, *lab, *exporterSide) {
	easy := natType{name: "easy"}
	s := startSim(t, natTopology(easy, easy))
	l := newLab(t)
	l.startRelay(s.host("relay"), relay.Limits{}, nil)
	return s, l, l.startExporter(s.host("exporter"), nil)
}

// sharedLAN has the client and the exporter on one LAN behind a
// symmetric NAT, and the relay on the internet.
func sharedLAN() netsim.Topology {
	return netsim.Topology{
		Seed:   1,
		Public: []netsim.Host{{Name: "relay", Link: netsim.Link{Latency: relayLatency}}},
		Sites: []netsim.Site{{
			Name: "lab", NAT: netsim.Symmetric, Uplink: netsim.Link{Latency: uplinkLatency},
			Hosts: []netsim.Host{
				{Name: "client", Link: netsim.Link{Latency: lanLatency}},
				{Name: "exporter", Link: netsim.Link{Latency: lanLatency}},
			},
		}},
	}
}

func (s *sim) host(name string) *netsim.Node {
	h, err := s.n.Host(name)
	require.NoError(s.t, err)
	return h
}
