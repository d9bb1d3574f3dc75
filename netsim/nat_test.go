package netsim

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// natTopology is one site "home" with host h behind nat, and public hosts A
// and B.
func natTopology(nat NAT) Topology {
	link := Link{Latency: 5 * time.Millisecond}
	return Topology{
		Seed:   1,
		Public: []Host{{Name: "A", Link: link}, {Name: "B", Link: link}},
		Sites: []Site{{
			Name:   "home",
			NAT:    nat,
			Uplink: Link{Latency: 10 * time.Millisecond},
			Hosts:  []Host{{Name: "h", Link: link}, {Name: "h2", Link: link}},
		}},
	}
}

// TestNATBehaviour checks each RFC 4787 mapping and filtering behaviour: the
// external ports h's packets to A:1000, A:2000 and B:1000 get (section 4.1),
// and which senders reach the mapping h made towards A:1000 (section 5).
func TestNATBehaviour(t *testing.T) {
	behaviours := []Behavior{EndpointIndependent, AddressDependent, AddressAndPortDependent}
	for _, mapping := range behaviours {
		for _, filtering := range behaviours {
			t.Run(fmt.Sprintf("mapping %v, filtering %v", mapping, filtering), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					testNATBehaviour(t, mapping, filtering)
				})
			})
		}
	}
}

func testNATBehaviour(t *testing.T, mapping, filtering Behavior) {
	n := start(t, natTopology(NAT{Mapping: mapping, Filtering: filtering}))
	a, b, h := host(t, n, "A"), host(t, n, "B"), host(t, n, "h")
	a1, a2, b1 := listenUDP(t, a, ":1000"), listenUDP(t, a, ":2000"), listenUDP(t, b, ":1000")
	hc := listenUDP(t, h, ":5000")
	const wait = time.Second

	send(t, hc, udpAddr(a.Addr(), 1000), "to A:1000")
	r, ok := recv(t, a1, wait)
	require.True(t, ok, "h's packet must reach A:1000")
	ext := r.from
	require.Equal(t, routerAddr(t, n, "home"), ext.Addr(), "A must see the router's address")
	require.EqualValues(t, 5000, ext.Port(), "the NAT must preserve the port")

	// Inbound to the mapping from three senders, only A:1000 contacted.
	extUDP := udpAddr(ext.Addr(), ext.Port())
	send(t, a2, extUDP, "from A:2000")
	send(t, b1, extUDP, "from B:1000")
	send(t, a1, extUDP, "from A:1000")
	var got []string
	for _, r := range recvAll(t, hc, wait) {
		got = append(got, r.payload)
	}
	want := map[Behavior][]string{
		EndpointIndependent:     {"from A:2000", "from B:1000", "from A:1000"},
		AddressDependent:        {"from A:2000", "from A:1000"},
		AddressAndPortDependent: {"from A:1000"},
	}[filtering]
	require.Equal(t, want, got)

	// Outbound to two more destinations.
	send(t, hc, udpAddr(a.Addr(), 2000), "to A:2000")
	send(t, hc, udpAddr(b.Addr(), 1000), "to B:1000")
	ra2, ok := recv(t, a2, wait)
	require.True(t, ok)
	rb1, ok := recv(t, b1, wait)
	require.True(t, ok)
	switch mapping {
	case EndpointIndependent:
		require.Equal(t, ext, ra2.from)
		require.Equal(t, ext, rb1.from)
	case AddressDependent:
		require.Equal(t, ext, ra2.from, "same remote address, same mapping")
		require.NotEqual(t, ext, rb1.from, "another remote address, another mapping")
	case AddressAndPortDependent:
		require.NotEqual(t, ext, ra2.from)
		require.NotEqual(t, ext, rb1.from)
		require.NotEqual(t, ra2.from, rb1.from)
	}
}

func TestNATPortAssignment(t *testing.T) {
	tests := []struct {
		name string
		nat  NAT
		// wantPreserved: h's and h2's first mappings keep ports 5000 and
		// 6000.
		wantPreserved bool
	}{
		{name: "port preservation", nat: NAT{}, wantPreserved: true},
		{name: "random ports", nat: NAT{RandomPorts: true}, wantPreserved: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := start(t, natTopology(tt.nat))
				a := host(t, n, "A")
				ac := listenUDP(t, a, ":1000")
				hc := listenUDP(t, host(t, n, "h"), ":5000")
				h2c := listenUDP(t, host(t, n, "h2"), ":6000")
				send(t, hc, udpAddr(a.Addr(), 1000), "h")
				r1, ok := recv(t, ac, time.Second)
				require.True(t, ok)
				send(t, h2c, udpAddr(a.Addr(), 1000), "h2")
				r2, ok := recv(t, ac, time.Second)
				require.True(t, ok)
				require.NotEqual(t, r1.from.Port(), r2.from.Port(), "two internal endpoints never share a mapping")
				if tt.wantPreserved {
					require.EqualValues(t, 5000, r1.from.Port())
					require.EqualValues(t, 6000, r2.from.Port())
					return
				}
				for _, r := range []received{r1, r2} {
					require.NotContains(t, []uint16{5000, 6000}, r.from.Port())
					require.GreaterOrEqual(t, r.from.Port(), uint16(firstNATPort))
				}
			})
		})
	}
}

// TestNATPortCollision: port preservation gives way when the port is taken.
func TestNATPortCollision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := start(t, natTopology(NAT{}))
		a := host(t, n, "A")
		ac := listenUDP(t, a, ":1000")
		hc := listenUDP(t, host(t, n, "h"), ":5000")
		h2c := listenUDP(t, host(t, n, "h2"), ":5000")
		send(t, hc, udpAddr(a.Addr(), 1000), "h")
		r1, ok := recv(t, ac, time.Second)
		require.True(t, ok)
		send(t, h2c, udpAddr(a.Addr(), 1000), "h2")
		r2, ok := recv(t, ac, time.Second)
		require.True(t, ok)
		require.EqualValues(t, 5000, r1.from.Port())
		require.NotEqualValues(t, 5000, r2.from.Port())
	})
}

// TestNATMappingTimeout: an idle mapping lives exactly its timeout after the
// last outbound packet; outbound traffic refreshes it, inbound does not.
func TestNATMappingTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration // 0: the default
		want    time.Duration
	}{
		{name: "default", want: DefaultMappingTimeout},
		{name: "10s", timeout: 10 * time.Second, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				topo := natTopology(NAT{Filtering: AddressAndPortDependent, RandomPorts: true, MappingTimeout: tt.timeout})
				// Instant links make the arithmetic plain: a packet
				// crosses the router when it is sent.
				topo.Public[0].Link = Link{}
				topo.Sites[0].Uplink = Link{}
				topo.Sites[0].Hosts[0].Link = Link{}
				var tr tracer
				n := start(t, topo, WithTrace(tr.record))
				a := host(t, n, "A")
				ac := listenUDP(t, a, ":1000")
				hc := listenUDP(t, host(t, n, "h"), ":5000")
				toA := udpAddr(a.Addr(), 1000)

				send(t, hc, toA, "open")
				r, ok := recv(t, ac, time.Second)
				require.True(t, ok)
				ext := udpAddr(r.from.Addr(), r.from.Port())
				opened := r.at

				// Inbound just before expiry passes but does not refresh.
				time.Sleep(time.Until(opened.Add(tt.want - time.Nanosecond)))
				send(t, ac, ext, "just before expiry")
				_, ok = recv(t, hc, time.Second)
				require.True(t, ok, "the mapping lives until its timeout")
				time.Sleep(time.Nanosecond)
				require.Equal(t, opened.Add(tt.want), time.Now())
				send(t, ac, ext, "at expiry")
				_, ok = recv(t, hc, time.Second)
				require.False(t, ok, "the mapping expired: inbound traffic must not have refreshed it")
				require.Equal(t, 1, tr.drops()[DropNoMapping])

				// A new mapping, kept alive by outbound packets.
				send(t, hc, toA, "reopen")
				r, ok = recv(t, ac, time.Second)
				require.True(t, ok)
				require.NotEqual(t, ext.AddrPort(), r.from, "a random-port NAT picks a new port after expiry")
				ext = udpAddr(r.from.Addr(), r.from.Port())
				for range 3 {
					time.Sleep(tt.want - time.Second)
					send(t, hc, toA, "keep-alive")
					_, ok = recv(t, ac, time.Second)
					require.True(t, ok)
				}
				send(t, ac, ext, "after keep-alives")
				_, ok = recv(t, hc, time.Second)
				require.True(t, ok, "outbound keep-alives keep the mapping")
			})
		})
	}
}

func TestNATHairpinning(t *testing.T) {
	for _, hairpin := range []bool{true, false} {
		t.Run(fmt.Sprintf("hairpinning %v", hairpin), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracer
				n := start(t, natTopology(NAT{Hairpinning: hairpin}), WithTrace(tr.record))
				a := host(t, n, "A")
				ac := listenUDP(t, a, ":1000")
				h1 := listenUDP(t, host(t, n, "h"), ":5000")
				h2 := listenUDP(t, host(t, n, "h2"), ":6000")
				// h2 learns its external address from A.
				send(t, h2, udpAddr(a.Addr(), 1000), "who am I")
				r, ok := recv(t, ac, time.Second)
				require.True(t, ok)

				send(t, h1, udpAddr(r.from.Addr(), r.from.Port()), "hairpin")
				got, ok := recv(t, h2, time.Second)
				require.Equal(t, hairpin, ok)
				if !hairpin {
					require.Equal(t, 1, tr.drops()[DropHairpin])
					return
				}
				require.Equal(t, "hairpin", got.payload)
				require.Equal(t, netip.AddrPortFrom(routerAddr(t, n, "home"), 5000), got.from,
					"a hairpinned packet comes from the sender's external address")
			})
		})
	}
}

// registered has h (on port 5000) send to a relay on A (port 3478), which
// saw it at ext, and a peer listen on B's port 4000.
func registered(t *testing.T, n *Network) (relay, peer *Node, rc, pc, hc net.PacketConn, ext *net.UDPAddr) {
	t.Helper()
	relay, peer = host(t, n, "A"), host(t, n, "B")
	rc = listenUDP(t, relay, ":3478")
	pc = listenUDP(t, peer, ":4000")
	hc = listenUDP(t, host(t, n, "h"), ":5000")
	send(t, hc, udpAddr(relay.Addr(), 3478), "register")
	r, ok := recv(t, rc, time.Second)
	require.True(t, ok)
	return relay, peer, rc, pc, hc, udpAddr(r.from.Addr(), r.from.Port())
}

// TestNATConntrackTrap: with AcceptUnsolicited, a punch from P that arrives
// before h has sent to P makes h's packets to P leave from another port, and
// P's packets to the old one stay absorbed; without it, punching works.
func TestNATConntrackTrap(t *testing.T) {
	for _, accept := range []bool{false, true} {
		t.Run(fmt.Sprintf("accept unsolicited %v", accept), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracer
				n := start(t, natTopology(NAT{Filtering: AddressAndPortDependent, AcceptUnsolicited: accept}), WithTrace(tr.record))
				relay, peer, rc, pc, hc, ext := registered(t, n)

				send(t, pc, ext, "early punch")
				_, ok := recv(t, hc, time.Second)
				require.False(t, ok, "filtered: h has not sent to the peer yet")
				require.Equal(t, 1, tr.drops()[DropNATFiltered])

				send(t, hc, udpAddr(peer.Addr(), 4000), "punch")
				r, ok := recv(t, pc, time.Second)
				require.True(t, ok)
				send(t, pc, ext, "punch")
				_, ok = recv(t, hc, time.Second)
				if !accept {
					require.Equal(t, ext.AddrPort(), r.from, "the mapping is endpoint-independent")
					require.True(t, ok, "the hole is open")
					return
				}
				require.NotEqual(t, ext.AddrPort(), r.from, "the conntrack entry took the port: the NAT acts symmetric")
				require.False(t, ok, "the conntrack entry absorbs the peer's packets")
				require.Equal(t, 1, tr.drops()[DropConntrack])

				send(t, hc, udpAddr(relay.Addr(), 3478), "still registered")
				r, ok = recv(t, rc, time.Second)
				require.True(t, ok)
				require.Equal(t, ext.AddrPort(), r.from, "other destinations keep the port")
			})
		})
	}
}

// TestTTL: a router drops a packet whose TTL runs out instead of
// forwarding it, before its NAT on the way out; so a packet with TTL 2
// opens its sender's NAT to a peer (whose answer then gets in) without
// reaching the peer, and TTL 1 does not even do that.
func TestTTL(t *testing.T) {
	tests := []struct {
		ttl       int
		reached   bool // the peer got it
		opened    bool // the peer's packet to h's mapping then gets in
		droppedAt string
	}{
		{ttl: 1, droppedAt: "router home"},
		{ttl: 2, opened: true, droppedAt: "internet"},
		{ttl: 3, reached: true, opened: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("ttl %d", tt.ttl), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracer
				n := start(t, natTopology(NAT{Filtering: AddressAndPortDependent}), WithTrace(tr.record))
				_, peer, _, pc, hc, ext := registered(t, n)

				_, err := hc.(interface {
					WriteToTTL([]byte, net.Addr, int) (int, error)
				}).WriteToTTL([]byte("open"), udpAddr(peer.Addr(), 4000), tt.ttl)
				require.NoError(t, err)
				_, ok := recv(t, pc, time.Second)
				require.Equal(t, tt.reached, ok, "the peer got the packet")
				if tt.droppedAt != "" {
					require.Equal(t, 1, tr.drops()[DropTTL])
					require.Contains(t, tr.steps(), "drop "+tt.droppedAt)
				}
				send(t, pc, ext, "answer")
				_, ok = recv(t, hc, time.Second)
				require.Equal(t, tt.opened, ok, "the peer's answer got in")
			})
		})
	}
}
