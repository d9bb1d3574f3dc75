package mesh_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers/storage"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/netsim"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/stretchr/testify/require"
)

// faultySocket is a peer's socket that a test can break: cut drops what
// goes to or comes from anyone but the relay (a NAT forgot the mapping, the
// network changed), dead drops everything (the process crashed), and
// stall holds the next datagram that comes in that long (the process was
// slow to run).
type faultySocket struct {
	net.PacketConn
	relay     netip.Addr
	cut, dead atomic.Bool
	stall     atomic.Int64 // a time.Duration
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
			time.Sleep(time.Duration(f.stall.Swap(0)))
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

// WriteToTTL passes a packet's TTL on to the simulator's socket.
func (f *faultySocket) WriteToTTL(b []byte, a net.Addr, ttl int) (int, error) {
	if f.drops(a) {
		return len(b), nil
	}
	return f.PacketConn.(interface {
		WriteToTTL([]byte, net.Addr, int) (int, error)
	}).WriteToTTL(b, a, ttl)
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
		s, l, es := startEasyLab(t)
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

// TestFlashAcrossMove: a flash upload, a long byte stream from the
// client, is under way on the direct path when that path dies; the session
// moves to the relay and the upload goes on there: the image arrives
// whole, its sha256 checked by the exporter. The direct path is one the
// connection moved to from the relay (across the internet), or the one
// its dial took (across a LAN, where the direct handshake wins).
func TestFlashAcrossMove(t *testing.T) {
	tests := []struct {
		name string
		topo func() netsim.Topology
		skip string
	}{
		{name: "moved-direct", topo: func() netsim.Topology {
			easy := natType{name: "easy"}
			topo := natTopology(easy, easy)
			topo.Sites[0].Uplink.Bandwidth = 8_000_000 // the client's: 1 MB/s, so the upload takes seconds
			return topo
		}},
		{name: "dialed-direct", topo: func() netsim.Topology {
			topo := sharedLAN()
			topo.Sites[0].Hosts[0].Link.Bandwidth = 8_000_000 // the client's
			return topo
		}, skip: "known limitation: the dial's own direct path is left by QUIC migration, whose probe quic-go " +
			"holds back while the congestion window is full of packets lost on the dead path; the upload stalls " +
			"until the idle timeout (a direct path the connection moved to is turned in place instead)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip != "" {
				t.Skip(tt.skip)
			}
			synctest.Test(t, func(t *testing.T) {
				s := startSim(t, tt.topo())
				l := newLab(t)
				l.startRelay(s.host("relay"), relay.Limits{}, nil)
				es := l.startExporter(s.host("exporter"), nil)
				tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
				es.serve(t, tok)
				wrap, sock := l.faulty()
				conn, err := mesh.Dial(t.Context(), l.dialConfig(s.host("client"), tok, mesh.Auto, wrap))
				require.NoError(t, err)
				t.Cleanup(func() { conn.Close() })
				waitPath(t, conn, mesh.PathDirect, 5*time.Second)
				d, err := client.New(conn).Driver(t.Context(), "storage")
				require.NoError(t, err)

				image := make([]byte, 6<<20)
				rand.Read(image)
				sum := sha256.Sum256(image)
				upload := &progressReader{r: bytes.NewReader(image), mark: 1 << 20, passed: make(chan struct{})}
				type written struct {
					img storage.Image
					err error
				}
				done := make(chan written, 1)
				go func() {
					img, err := storage.NewClient(d).Write(t.Context(), upload, storage.WriteOptions{SHA256: hex.EncodeToString(sum[:])})
					done <- written{img, err}
				}()
				<-upload.passed
				sock.cut.Store(true)
				cut := time.Now()
				waitPath(t, conn, mesh.PathRelayUDP, 10*time.Second)
				t.Logf("the session moved to the relay %v after the direct path died", time.Since(cut))
				w := <-done
				require.NoError(t, w.err)
				require.Equal(t, hex.EncodeToString(sum[:]), w.img.SHA256)
				require.Equal(t, int64(len(image)), w.img.Size)
				require.Equal(t, mesh.PathRelayUDP, conn.Path(), "the upload finished on the relay")
			})
		})
	}
}

// progressReader closes passed once mark bytes have been read.
type progressReader struct {
	r      io.Reader
	n      int
	mark   int
	passed chan struct{}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	before := p.n
	p.n += n
	if before < p.mark && p.n >= p.mark {
		close(p.passed)
	}
	return n, err
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

// TestConntrackTrap: both sites' Linux routers let unsolicited UDP in,
// and the exporter acts on the relay's word to punch 50 ms after the
// client (a busy machine). Had the client's first ping reached the
// exporter's router before the exporter's own packets left, that router
// would have kept a conntrack entry moving the exporter's mapping to
// another port; the packets that open each side's NAT without reaching
// the other's, and the first ping's lead, keep the trap shut: the session
// goes direct in the first round.
func TestConntrackTrap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		accepting := natType{name: "accepting", nat: netsim.NAT{Filtering: netsim.AddressAndPortDependent, AcceptUnsolicited: true}}
		var trapped atomic.Int32
		n, err := netsim.New(natTopology(accepting, accepting), netsim.WithTrace(func(e netsim.Event) {
			if e.Kind == netsim.EventDrop && e.Reason == netsim.DropConntrack {
				trapped.Add(1)
			}
		}))
		require.NoError(t, err)
		t.Cleanup(func() { n.Close() })
		s := &sim{t: t, n: n}
		l := newLab(t)
		l.startRelay(s.host("relay"), relay.Limits{}, nil)
		wrap, sock := l.faulty()
		es := l.startExporter(s.host("exporter"), wrap)
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
		es.serve(t, tok)
		synctest.Wait()
		sock.stall.Store(int64(50 * time.Millisecond)) // the relay's Paired, next in
		conn, sess := l.dial(s.host("client"), tok, mesh.Auto)
		waitPath(t, conn, mesh.PathDirect, 4*time.Second) // within the first punching round
		powerOn(t, sess)
		require.Zero(t, trapped.Load(), "no packet was absorbed by a conntrack entry")
	})
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
		s, l, es := startEasyLab(t)
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
// renews it; when the renewed tokens stop getting later it keeps asking,
// so an extension of the lease late in its life is not missed; and it
// ends with its lease.
func TestTokenRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, l, es := startEasyLab(t)
		key := l.clientKey.Public().(ed25519.PublicKey)
		var (
			mu       sync.Mutex
			leaseEnd = time.Now().Add(5 * time.Minute)
			issued   int
		)
		// As the coordinator does: two minutes, or less when the lease
		// ends sooner.
		coordinator := func() string {
			mu.Lock()
			defer mu.Unlock()
			issued++
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
		mu.Lock()
		require.Greater(t, issued, 3)
		mu.Unlock()

		// The tokens now end with the lease; half a minute before its
		// end, someone extends it by three minutes.
		time.Sleep(30 * time.Second)
		mu.Lock()
		leaseEnd = leaseEnd.Add(3 * time.Minute)
		want := leaseEnd
		mu.Unlock()
		time.Sleep(time.Minute) // past the lease's first end
		powerOn(t, sess)

		<-conn.Done()
		require.ErrorIs(t, conn.Err(), mesh.ErrSessionExpired)
		<-econn.Done()
		require.ErrorIs(t, econn.Err(), mesh.ErrSessionExpired)
		require.WithinDuration(t, want, time.Now(), time.Second, "the session ends with the extended lease")
	})
}

// TestClientCloses: when the client closes its session, the exporter's
// side ends at once, not at the token's expiry, and a new session of the
// same lease can start right after.
func TestClientCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, l, es := startEasyLab(t)
		key := l.clientKey.Public().(ed25519.PublicKey)
		for round := range 3 {
			tok := l.auth.session(t, "lease-1", key, exporterName, time.Hour)
			econn := es.serve(t, tok)
			conn, sess := l.dial(s.host("client"), tok, mesh.Auto)
			powerOn(t, sess)
			start := time.Now()
			require.NoError(t, conn.Close())
			<-econn.Done()
			require.ErrorIs(t, econn.Err(), mesh.ErrSessionEnded, "round %d", round)
			require.Less(t, time.Since(start), time.Second, "round %d: the exporter's side ends within a round trip or so", round)
		}
	})
}
