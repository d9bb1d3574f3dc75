package mesh_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/netsim"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/stretchr/testify/require"
)

// TestLatency measures, in virtual time, what a session costs in round
// trips: a driver call is one round trip of its path (direct: between the
// peers; relayed: both legs to the relay), and setup from the lease being
// ready (the token in hand, the exporter joined) to the first driver call
// is a stated number of round trips.
func TestLatency(t *testing.T) {
	easy := natType{name: "easy"}
	tests := []struct {
		name   string
		policy mesh.PathPolicy
		path   mesh.Path
		rtt    time.Duration
		// setup is Dial's time: reaching the relay (one leg's round trip),
		// joining and pairing (another), then the connection: relayed,
		// one relayed round trip; direct, the wait after the packets that
		// open the NATs, a ping's round trip and a handshake's.
		setup time.Duration
	}{
		{"direct", mesh.DirectOnly, mesh.PathDirect, rttDirect, 2*rttRelayLeg + mesh.OpenLead + 2*rttDirect},
		{"relayed", mesh.RelayOnly, mesh.PathRelayUDP, rttRelayed, 2*rttRelayLeg + rttRelayed},
		{"auto", mesh.Auto, mesh.PathDirect, rttDirect, 2*rttRelayLeg + rttRelayed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := startSim(t, natTopology(easy, easy))
				l := newLab(t)
				l.startRelay(s.host("relay"), relay.Limits{}, nil)
				es := l.startExporter(s.host("exporter"), nil)
				tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
				es.serve(t, tok)

				start := time.Now()
				conn, sess := l.dial(s.host("client"), tok, tt.policy)
				require.Equal(t, tt.setup, time.Since(start), "setup")
				// The first call reads the driver tree, then calls: two
				// round trips of the path the session started on.
				first := time.Now()
				powerOn(t, sess)
				firstPath := tt.rtt
				if tt.policy == mesh.Auto {
					firstPath = rttRelayed
				}
				require.Equal(t, 2*firstPath, time.Since(first), "first driver call")

				waitPath(t, conn, tt.path, 5*time.Second)
				for range 3 {
					begin := time.Now()
					powerOn(t, sess)
					require.Equal(t, tt.rtt, time.Since(begin), "driver call on %v", tt.path)
				}
			})
		})
	}
}

// TestSameLAN: two peers on one LAN connect directly over it, never
// through their router.
func TestSameLAN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t, sharedLAN())
		l := newLab(t)
		l.startRelay(s.host("relay"), relay.Limits{}, nil)
		es := l.startExporter(s.host("exporter"), nil)
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
		es.serve(t, tok)
		conn, sess := l.dial(s.host("client"), tok, mesh.Auto)
		waitPath(t, conn, mesh.PathDirect, 5*time.Second)
		powerOn(t, sess)
		begin := time.Now()
		powerOn(t, sess)
		require.Equal(t, 4*lanLatency, time.Since(begin), "a round trip across the LAN")
	})
}

// TestPublicAddr: two peers behind one symmetric NAT that offer no
// interface addresses go through the relay; when the exporter names an
// address it is reachable at (a port forward, say), the client goes
// direct to it.
func TestPublicAddr(t *testing.T) {
	for _, tt := range []struct {
		name   string
		public bool
		want   mesh.Path
	}{
		{"none", false, mesh.PathRelayUDP},
		{"configured", true, mesh.PathDirect},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := startSim(t, sharedLAN())
				l := newLab(t)
				l.startRelay(s.host("relay"), relay.Limits{}, nil)
				eh := s.host("exporter")
				enet := network(t, eh, nil)
				enet.LocalAddrs = []netip.Addr{}
				if tt.public {
					port := uint16(enet.PacketConn.LocalAddr().(*net.UDPAddr).Port)
					enet.PublicAddrs = []netip.AddrPort{netip.AddrPortFrom(eh.Addr(), port)}
				}
				ln, err := mesh.Listen(mesh.ListenConfig{Key: l.exporterKey, Name: exporterName, Tokens: l.auth.ring,
					Relay: l.relayConfig(), Network: enet, Logger: testLogger(t, "exporter")})
				require.NoError(t, err)
				es := &exporterSide{ln: ln, exp: newBoard(t)}
				t.Cleanup(es.stop)
				tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
				es.serve(t, tok)
				cfg := l.dialConfig(s.host("client"), tok, mesh.Auto, nil)
				cfg.Network.LocalAddrs = []netip.Addr{}
				conn, err := mesh.Dial(t.Context(), cfg)
				require.NoError(t, err)
				t.Cleanup(func() { conn.Close() })
				time.Sleep(5 * time.Second) // a whole punching round
				require.Equal(t, tt.want, conn.Path())
				powerOn(t, client.New(conn))
			})
		})
	}
}

// TestIdleConnection: the exporter has a second connection of the
// session that carries nothing (one that lost the client's race and was
// not closed: a dial cancelled after its handshake is dropped without a
// word) and came in after the one the client uses; the client's calls are
// served all the same.
func TestIdleConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t, netsim.Topology{
			Seed: 1,
			Public: []netsim.Host{
				{Name: "relay", Link: netsim.Link{Latency: relayLatency}},
				{Name: "client", Link: netsim.Link{Latency: uplinkLatency}},
				{Name: "exporter", Link: netsim.Link{Latency: uplinkLatency}},
			},
		})
		l := newLab(t)
		l.startRelay(s.host("relay"), relay.Limits{}, nil)
		var exporterPort uint16
		es := l.startExporter(s.host("exporter"), func(pc net.PacketConn) net.PacketConn {
			exporterPort = uint16(pc.LocalAddr().(*net.UDPAddr).Port)
			return pc
		})
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
		econn := es.serve(t, tok)
		conn, sess := l.dial(s.host("client"), tok, mesh.Auto)
		powerOn(t, sess)

		_, stop, err := mesh.DialIdle(t.Context(), l.dialConfig(s.host("client"), tok, mesh.Auto, nil), tok,
			netip.AddrPortFrom(s.host("exporter").Addr(), exporterPort))
		require.NoError(t, err)
		defer stop()
		synctest.Wait() // the exporter has taken the idle connection
		for range 3 {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			d, err := sess.Driver(ctx, "power")
			require.NoError(t, err)
			require.NoError(t, power.NewClient(d).On(ctx))
			cancel()
		}
		require.Equal(t, conn.Path(), econn.Path(), "the exporter reports the path the client uses")
	})
}

// TestSetupRoundTrips measures, on a network where every path's round trip
// is 40 ms (to the relay, and between the peers), the time from the lease
// being ready (the token in hand, the exporter joined) to the answer of the
// first driver call (which reads the driver tree, then calls), in round
// trips.
func TestSetupRoundTrips(t *testing.T) {
	const rtt = 40 * time.Millisecond
	tests := []struct {
		policy mesh.PathPolicy
		// Reaching the relay and joining: two round trips. Relayed, the
		// handshake, the tree and the call cross both legs: two round
		// trips each. Direct, punching takes one, the handshake one, the
		// tree and the call one each.
		rtts int
		// wait is the time besides: direct, the punch's first ping waits
		// after the packets that open the NATs.
		wait time.Duration
	}{
		{mesh.RelayOnly, 2 + 3*2, 0},
		{mesh.DirectOnly, 2 + 2 + 2, mesh.OpenLead},
		// Auto races the two, which here finish their handshakes at the
		// same instant: TestLatency has it on a network where they do not.
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				site := func(name, host string) netsim.Site {
					return netsim.Site{Name: name, Uplink: netsim.Link{Latency: rtt / 4},
						Hosts: []netsim.Host{{Name: host}}}
				}
				s := startSim(t, netsim.Topology{
					Seed:   1,
					Public: []netsim.Host{{Name: "relay", Link: netsim.Link{Latency: rtt / 4}}},
					Sites:  []netsim.Site{site("home", "client"), site("lab", "exporter")},
				})
				l := newLab(t)
				l.startRelay(s.host("relay"), relay.Limits{}, nil)
				es := l.startExporter(s.host("exporter"), nil)
				tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
				es.serve(t, tok)
				begin := time.Now()
				_, sess := l.dial(s.host("client"), tok, tt.policy)
				powerOn(t, sess)
				took := time.Since(begin)
				t.Logf("%v: first driver call answered %v after the lease was ready: %.1f round trips of %v and %v",
					tt.policy, took, float64(took-tt.wait)/float64(rtt), rtt, tt.wait)
				require.Equal(t, time.Duration(tt.rtts)*rtt+tt.wait, took)
			})
		})
	}
}

// TestStalledConsole: a console nobody reads, its stream's window full,
// does not slow a power call: each call is its own QUIC stream.
func TestStalledConsole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, l, es := startEasyLab(t)
		tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
		es.serve(t, tok)
		conn, sess := l.dial(s.host("client"), tok, mesh.Auto)
		waitPath(t, conn, mesh.PathDirect, 5*time.Second)
		b := bootBoard(t, sess)
		// 2.4 MB of output (each line echoed, then printed), more than
		// the stream's 2 MiB window, and never read.
		line := "echo " + strings.Repeat("x", 1000) + "\r"
		for range 1200 {
			_, err := io.WriteString(b.con, line)
			require.NoError(t, err)
		}
		time.Sleep(time.Second) // of virtual time: the output has long filled the window
		begin := time.Now()
		powerOn(t, sess)
		require.Equal(t, rttDirect, time.Since(begin))
	})
}
