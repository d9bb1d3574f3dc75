package mesh_test

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/netsim"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/stretchr/testify/require"
)

// natType is one row or column of the matrix: a site's NAT and firewall.
type natType struct {
	name     string
	nat      netsim.NAT
	blockUDP bool
}

// natTypes are every RFC 4787 mapping × filtering pair (ports kept), the
// symmetric NAT (random ports), and a firewall that drops all UDP.
func natTypes() []natType {
	short := map[netsim.Behavior]string{
		netsim.EndpointIndependent:     "EI",
		netsim.AddressDependent:        "AD",
		netsim.AddressAndPortDependent: "APD",
	}
	var out []natType
	for _, m := range []netsim.Behavior{netsim.EndpointIndependent, netsim.AddressDependent, netsim.AddressAndPortDependent} {
		for _, f := range []netsim.Behavior{netsim.EndpointIndependent, netsim.AddressDependent, netsim.AddressAndPortDependent} {
			out = append(out, natType{name: "m" + short[m] + "/f" + short[f], nat: netsim.NAT{Mapping: m, Filtering: f}})
		}
	}
	return append(out,
		// Linux masquerading on a router that lets unsolicited UDP in:
		// an early punch packet would leave a conntrack entry that spoils
		// the port (see the relay package doc).
		natType{name: "mEI/fAPD+acc", nat: netsim.NAT{Filtering: netsim.AddressAndPortDependent, AcceptUnsolicited: true}},
		natType{name: "symmetric", nat: netsim.Symmetric},
		natType{name: "no-udp", blockUDP: true})
}

// theory is the path a pair of NATs allows, given how punching works here
// (see the mesh package doc):
//
//   - A side whose firewall drops UDP reaches the relay over TCP.
//   - A NAT whose mapping depends on the destination's port gives another
//     port towards the relay's second port: the peer sees it, and when
//     both sides have such NATs, no punching is tried.
//   - With endpoint-independent mapping on both sides, each side's pings
//     go out from the port the other side punches to, and simultaneous
//     pings open both NATs whatever their filtering: direct.
//   - When only one side's mapping depends on the destination, its pings
//     leave from a new port. The other side (one port for everything) hears
//     them if its filter lets in any port of an address it sent to
//     (endpoint-independent or address-dependent filtering), answers, and
//     its ping back opens the path; an address-and-port-dependent filter
//     drops them, and nothing the hard side hears comes back: relay.
//   - When both mappings depend on the destination (at least one only on
//     the address, so punching is tried), a ping reaches the other side
//     only through its relay mapping, which must let anyone in
//     (endpoint-independent filtering); its answer leaves from yet another
//     port, which the first side's filter must take from that address.
func theory(c, e natType) (client, exporter mesh.Path) {
	switch {
	case c.blockUDP && e.blockUDP:
		return mesh.PathRelayTCP, mesh.PathRelayTCP
	case c.blockUDP:
		return mesh.PathRelayTCP, mesh.PathRelayUDP
	case e.blockUDP:
		return mesh.PathRelayUDP, mesh.PathRelayTCP
	}
	relayed := func() (mesh.Path, mesh.Path) { return mesh.PathRelayUDP, mesh.PathRelayUDP }
	direct := func() (mesh.Path, mesh.Path) { return mesh.PathDirect, mesh.PathDirect }
	easy := func(t natType) bool { return t.nat.Mapping == netsim.EndpointIndependent }
	portDependent := func(t natType) bool { return t.nat.Mapping == netsim.AddressAndPortDependent }
	lets := func(t natType, b ...netsim.Behavior) bool {
		for _, f := range b {
			if t.nat.Filtering == f {
				return true
			}
		}
		return false
	}
	ei, ad := netsim.EndpointIndependent, netsim.AddressDependent
	switch {
	case portDependent(c) && portDependent(e):
		return relayed()
	case easy(c) && easy(e):
		return direct()
	case easy(c) && lets(c, ei, ad), easy(e) && lets(e, ei, ad):
		return direct()
	case easy(c) || easy(e):
		return relayed()
	case lets(c, ei) && lets(e, ei, ad), lets(e, ei) && lets(c, ei, ad):
		return direct()
	}
	return relayed()
}

// Topology latencies: every path's round trip is known.
const (
	lanLatency    = 5 * time.Millisecond
	uplinkLatency = 10 * time.Millisecond
	relayLatency  = 5 * time.Millisecond
	// rttRelayLeg is a peer's round trip to the relay.
	rttRelayLeg = 2 * (lanLatency + uplinkLatency + relayLatency)
	// rttDirect is the round trip between the peers.
	rttDirect = 2 * (2*lanLatency + 2*uplinkLatency)
	// rttRelayed is the round trip through the relay: both legs.
	rttRelayed = 2 * rttRelayLeg
)

// natTopology puts the client and the exporter behind their NATs.
func natTopology(c, e natType) netsim.Topology {
	site := func(name, hostName string, t natType) netsim.Site {
		return netsim.Site{
			Name: name, NAT: t.nat, Firewall: netsim.Firewall{BlockUDP: t.blockUDP},
			Uplink: netsim.Link{Latency: uplinkLatency},
			Hosts:  []netsim.Host{{Name: hostName, Link: netsim.Link{Latency: lanLatency}}},
		}
	}
	return netsim.Topology{
		Seed:   1,
		Public: []netsim.Host{{Name: "relay", Link: netsim.Link{Latency: relayLatency}}},
		Sites:  []netsim.Site{site("home", "client", c), site("lab", "exporter", e)},
	}
}

// setupBound is the most a Dial may take, in round trips: the link to the
// relay (one round trip: the QUIC handshake, with the address probes beside
// it), the join and pairing (one more), and the end-to-end handshake
// through the relay (one relayed round trip). Over TCP, the link waits
// tcpFallbackDelay (500 ms) for QUIC first, then takes a TCP and a TLS
// handshake.
func setupBound(c natType) time.Duration {
	if c.blockUDP {
		return 500*time.Millisecond + 3*rttRelayLeg + rttRelayed
	}
	return 2*rttRelayLeg + rttRelayed
}

// cell is one result of the matrix.
type cell struct {
	path           mesh.Path
	setup, settled time.Duration
}

// TestNATMatrix connects a client and an exporter behind every pair of NAT
// types and checks that the session takes the path theory allows, direct
// where it can be and relayed otherwise, that a driver call works on it,
// and how long setup took, in virtual time.
func TestNATMatrix(t *testing.T) {
	types := natTypes()
	var mu sync.Mutex
	grid := map[[2]string]cell{}
	t.Run("cells", func(t *testing.T) {
		for _, c := range types {
			for _, e := range types {
				t.Run(c.name+"~"+e.name, func(t *testing.T) {
					t.Parallel()
					synctest.Test(t, func(t *testing.T) {
						got := natCell(t, c, e)
						mu.Lock()
						grid[[2]string{c.name, e.name}] = got
						mu.Unlock()
					})
				})
			}
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, "path / setup ms / ms until the path settled; rows: client's NAT, columns: exporter's\n%-12s", "")
	for _, e := range types {
		fmt.Fprintf(&b, " %-16s", e.name)
	}
	for _, c := range types {
		fmt.Fprintf(&b, "\n%-12s", c.name)
		for _, e := range types {
			g, ok := grid[[2]string{c.name, e.name}]
			if !ok {
				fmt.Fprintf(&b, " %-16s", "FAILED")
				continue
			}
			fmt.Fprintf(&b, " %-16s", fmt.Sprintf("%s/%d/%d", g.path, g.setup.Milliseconds(), g.settled.Milliseconds()))
		}
	}
	t.Log("\n" + b.String())
}

func natCell(t *testing.T, c, e natType) cell {
	s := startSim(t, natTopology(c, e))
	l := newLab(t)
	l.startRelay(s.host("relay"), relay.Limits{}, nil)
	es := l.startExporter(s.host("exporter"), nil)
	tok := l.auth.session(t, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
	econn := es.serve(t, tok)

	start := time.Now()
	conn, sess := l.dial(s.host("client"), tok, mesh.Auto)
	setup := time.Since(start)
	require.LessOrEqual(t, setup, setupBound(c), "setup")

	wantClient, wantExporter := theory(c, e)
	if wantClient == mesh.PathDirect {
		waitPath(t, conn, mesh.PathDirect, 10*time.Second)
	} else {
		// Punching, if tried, is over after its window; the path stays.
		time.Sleep(5 * time.Second)
	}
	settled := time.Since(start)
	powerOn(t, sess)
	got := cell{path: conn.Path(), setup: setup, settled: settled}
	if got.path != mesh.PathDirect {
		got.settled = setup
	}
	require.Equal(t, wantClient, got.path, "client's path")
	require.Equal(t, wantExporter, econn.Path(), "exporter's path")
	return got
}
