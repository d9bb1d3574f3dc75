package mesh_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/stretchr/testify/require"
)

// faultySocket is a peer's socket that a test can break: cut drops what
// goes to or comes from anyone but the relay (a NAT forgot the mapping, the
// network changed), dead drops everything (the process crashed).
type faultySocket struct {
	net.PacketConn
	relay     netip.Addr
	cut, dead atomic.Bool
}

func (f *faultySocket) drops(a net.Addr) bool {
	if f.dead.Load() {
		return true
	}
	ua, ok := a.(*net.UDPAddr)
	return f.cut.Load() && ok && ua.AddrPort().Addr().Unmap() != f.relay
}

func (f *faultySocket) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := f.PacketConn.ReadFrom(b)
		if err != nil || !f.drops(a) {
			return n, a, err
		}
	}
}

func (f *faultySocket) WriteTo(b []byte, a net.Addr) (int, error) {
	if f.drops(a) {
		return len(b), nil
	}
	return f.PacketConn.WriteTo(b, a)
}

func (f *faultySocket) SetReadBuffer(n int) error {
	return f.PacketConn.(interface{ SetReadBuffer(int) error }).SetReadBuffer(n)
}

func (f *faultySocket) SetWriteBuffer(n int) error {
	return f.PacketConn.(interface{ SetWriteBuffer(int) error }).SetWriteBuffer(n)
}

// faulty returns a wrap function for a peer's socket, and the socket.
func (l *lab) faulty() (func(net.PacketConn) net.PacketConn, *faultySocket) {
	f := &faultySocket{relay: l.relayAt}
	return func(pc net.PacketConn) net.PacketConn { f.PacketConn = pc; return f }, f
}

// board is a client session's console on the powered, booted board.
type board struct {
	t    testing.TB
	sess *client.Session
	con  *client.ByteStream
}

func bootBoard(t testing.TB, sess *client.Session) *board {
	con := console(t, sess)
	powerOn(t, sess)
	expect(t, con, `root@virtual:~# `)
	return &board{t: t, sess: sess, con: con}
}

// echo runs `echo word` on the board's shell and waits for its output.
func (b *board) echo(word string) {
	b.t.Helper()
	_, err := io.WriteString(b.con, "echo "+word+"\r")
	require.NoError(b.t, err)
	expect(b.t, b.con, `\n`+word+`\r`)
}

// TestDirectPathDies: the direct path stops carrying packets in the middle
// of a console session (the NAT forgot the mapping); the console goes on
// through the relay after a short stall, and back on the direct path once
// it opens again.
func TestDirectPathDies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		easy := natType{name: "easy"}
		s := startSim(t, natTopology(easy, easy))
		l := newLab(t)
		l.startRelay(s.host("relay"), relay.Limits{}, nil)
		es := l.startExporter(s.host("exporter"), nil)
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
		econn := es.serve(t, tok)
		wrap, sock := l.faulty()
		conn, err := mesh.Dial(t.Context(), l.dialConfig(s.host("client"), tok, mesh.Auto, wrap))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		waitPath(t, conn, mesh.PathDirect, 5*time.Second)
		b := bootBoard(t, client.New(conn))
		b.echo("one")

		sock.cut.Store(true)
		begin := time.Now()
		b.echo("two")
		stall := time.Since(begin)
		require.Equal(t, mesh.PathRelayUDP, conn.Path())
		require.Equal(t, mesh.PathRelayUDP, econn.Path())
		// Three missed heartbeats and half a second (3.5 s), the next
		// heartbeat, then a relayed round trip to probe the relayed path
		// and one for the typed line.
		require.LessOrEqual(t, stall, 3500*time.Millisecond+time.Second+2*rttRelayed, "the console stalled")
		t.Logf("the console stalled %v while moving to the relay", stall)

		sock.cut.Store(false)
		// The relayed session tries to go direct every minute.
		waitPath(t, conn, mesh.PathDirect, time.Minute+5*time.Second)
		b.echo("three")
	})
}

// TestRelayRestarts: a relayed console goes on after the relay restarts,
// once both peers are back on it; a direct session does not notice.
func TestRelayRestarts(t *testing.T) {
	for _, tt := range []struct {
		policy mesh.PathPolicy
		path   mesh.Path
		stall  time.Duration // the most the console may stall
	}{
		// Each peer notices at its next packet to the relay, a data
		// packet (answered "unknown channel") or a keep-alive (answered
		// with a stateless reset): the exporter's next keep-alive is at
		// most linkKeepAlive (5 s) away.
		{mesh.RelayOnly, mesh.PathRelayUDP, 7 * time.Second},
		{mesh.Auto, mesh.PathDirect, rttDirect},
	} {
		t.Run(tt.policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				easy := natType{name: "easy"}
				s := startSim(t, natTopology(easy, easy))
				l := newLab(t)
				r := l.startRelay(s.host("relay"), relay.Limits{}, nil)
				es := l.startExporter(s.host("exporter"), nil)
				tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
				es.serve(t, tok)
				conn, sess := l.dial(s.host("client"), tok, tt.policy)
				waitPath(t, conn, tt.path, 5*time.Second)
				b := bootBoard(t, sess)
				b.echo("before")

				r.stop()
				l.startRelay(s.host("relay"), relay.Limits{}, nil)
				begin := time.Now()
				b.echo("after")
				stall := time.Since(begin)
				t.Logf("the console took %v across the restart", stall)
				require.LessOrEqual(t, stall, tt.stall)
				require.Equal(t, tt.path, conn.Path())
			})
		})
	}
}

// TestExporterRestarts: the exporter process dies and a new one joins the
// session; the console open at the time ends, saying why, and the session
// goes on with the new process.
func TestExporterRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		easy := natType{name: "easy"}
		s := startSim(t, natTopology(easy, easy))
		l := newLab(t)
		l.startRelay(s.host("relay"), relay.Limits{}, nil)
		wrap, sock := l.faulty()
		old := l.startExporter(s.host("exporter"), wrap)
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
		old.serve(t, tok)
		conn, sess := l.dial(s.host("client"), tok, mesh.Auto)
		waitPath(t, conn, mesh.PathDirect, 5*time.Second)
		b := bootBoard(t, sess)
		b.echo("before")

		sock.dead.Store(true) // the process is gone: not a packet more
		old.stop()
		restarted := l.startExporter(s.host("exporter"), nil)
		restarted.serve(t, tok)

		_, err := io.ReadAll(b.con)
		require.ErrorIs(t, err, mesh.ErrPeerRestarted)
		t.Logf("the console ended: %v", err)
		bootBoard(t, sess).echo("after")
		waitPath(t, conn, mesh.PathDirect, 5*time.Second)
	})
}

// TestLeaseExpires: the session's token runs out (the lease ended) in the
// middle of a console; the console ends with the reason, and so does the
// session, on both sides.
func TestLeaseExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		easy := natType{name: "easy"}
		s := startSim(t, natTopology(easy, easy))
		l := newLab(t)
		l.startRelay(s.host("relay"), relay.Limits{}, nil)
		es := l.startExporter(s.host("exporter"), nil)
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, 2*time.Minute)
		econn := es.serve(t, tok)
		conn, sess := l.dial(s.host("client"), tok, mesh.Auto)
		b := bootBoard(t, sess)
		b.echo("alive")

		_, err := io.ReadAll(b.con)
		require.ErrorIs(t, err, mesh.ErrSessionExpired)
		require.Contains(t, err.Error(), "lease-1")
		t.Logf("the console ended: %v", err)
		<-conn.Done()
		<-econn.Done()
		require.ErrorIs(t, conn.Err(), mesh.ErrSessionExpired)
		require.ErrorIs(t, econn.Err(), mesh.ErrSessionExpired)
		_, err = conn.OpenStream(t.Context())
		require.ErrorIs(t, err, mesh.ErrSessionExpired)
	})
}

// TestTokenRenewal: a session outlives its first token when the client
// renews it, and ends with its lease, when the renewed tokens stop getting
// later.
func TestTokenRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		easy := natType{name: "easy"}
		s := startSim(t, natTopology(easy, easy))
		l := newLab(t)
		l.startRelay(s.host("relay"), relay.Limits{}, nil)
		es := l.startExporter(s.host("exporter"), nil)
		key := l.clientKey.Public().(ed25519.PublicKey)
		leaseEnd := time.Now().Add(5 * time.Minute)
		var issued atomic.Int32
		// As the coordinator does: two minutes, or less when the lease
		// ends sooner.
		coordinator := func() string {
			issued.Add(1)
			return l.auth.session(t, "lease-1", key, exporterName, min(2*time.Minute, time.Until(leaseEnd)))
		}
		tok := coordinator()
		econn := es.serve(t, tok)
		cfg := l.dialConfig(s.host("client"), tok, mesh.Auto, nil)
		cfg.Token = func(ctx context.Context) (string, error) { return coordinator(), nil }
		conn, err := mesh.Dial(t.Context(), cfg)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		sess := client.New(conn)

		time.Sleep(4 * time.Minute)
		powerOn(t, sess) // past the first two tokens' expiry
		require.Greater(t, issued.Load(), int32(3))
		<-conn.Done()
		require.ErrorIs(t, conn.Err(), mesh.ErrSessionExpired)
		<-econn.Done()
		require.WithinDuration(t, leaseEnd, time.Now(), time.Second, "the session ends with the lease")
	})
}
