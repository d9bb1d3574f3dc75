package netsim

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// Ephemeral ports, Linux's default net.ipv4.ip_local_port_range; picked at
// random from the network's seeded source, as Linux picks them at random.
const (
	firstEphemeral = 32768
	lastEphemeral  = 60999
)

// Node is one simulated host: the sockets, listeners and TCP connections of
// one address. Its methods return standard library types so code under test
// can take a Node where it would use package net.
type Node struct {
	net   *Network
	name  string
	label string // "host NAME", for traces
	addr  netip.Addr
	mss   int   // TCP payload per segment: the host link's MTU less headers
	out   *pipe // towards the network
	in    *pipe // towards the host

	// Guarded by net.mu.
	udp       map[uint16]*udpConn
	listeners map[uint16]*tcpListener
	conns     map[tcpKey]*tcpConn
	tcpPorts  map[uint16]int // listeners and dialed connections holding each port
}

func (n *Network) newNode(h Host, toNet func(*packet)) *Node {
	nd := &Node{
		net:       n,
		name:      h.Name,
		label:     "host " + h.Name,
		addr:      h.Addr,
		udp:       map[uint16]*udpConn{},
		listeners: map[uint16]*tcpListener{},
		conns:     map[tcpKey]*tcpConn{},
		tcpPorts:  map[uint16]int{},
	}
	nd.out = newPipe("link "+h.Name+" out", h.Link, toNet)
	nd.in = newPipe("link "+h.Name+" in", h.Link, nd.deliver)
	nd.mss = nd.out.link.MTU - tcpOverhead
	n.nodes[h.Name] = nd
	return nd
}

// Name is the host's name in the Topology.
func (nd *Node) Name() string { return nd.name }

// Addr is the host's address: assigned by the plan unless the Topology gave
// one.
func (nd *Node) Addr() netip.Addr { return nd.addr }

func (nd *Node) String() string { return fmt.Sprintf("%s (%s)", nd.name, nd.addr) }

// transmit sends p from this host; callers hold net.mu. A packet to the
// host's own address loops back without touching a link.
func (nd *Node) transmit(p *packet) {
	n := nd.net
	if p.ttl == 0 {
		p.ttl = defaultTTL
	}
	n.emit(EventSend, p, nd.label, NotDropped)
	if p.dst.Addr() == nd.addr {
		n.schedule(time.Now(), func() { nd.deliver(p) })
		return
	}
	n.send(nd.out, p)
}

func (nd *Node) deliver(p *packet) {
	if p.proto == protoTCP {
		nd.deliverTCP(p)
		return
	}
	nd.deliverUDP(p)
}

// ephemeral picks a free port at random; callers hold net.mu.
func (nd *Node) ephemeral(inUse func(uint16) bool) (uint16, bool) {
	const count = lastEphemeral - firstEphemeral + 1
	start := nd.net.rand.IntN(count)
	for i := range count {
		if p := uint16(firstEphemeral + (start+i)%count); !inUse(p) {
			return p, true
		}
	}
	return 0, false
}

// closeAll closes everything the host has open; callers hold net.mu.
func (nd *Node) closeAll() {
	for _, c := range nd.udp {
		c.closeLocked()
	}
	for _, l := range nd.listeners {
		l.closeLocked()
	}
	for _, c := range nd.conns {
		c.closeLocked()
	}
}

// parseBind parses the address of a Listen or ListenPacket: ":port",
// "ip:port" with the host's own address, or an unspecified address.
func (nd *Node) parseBind(network, address string) (netip.AddrPort, error) {
	host, portText, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("netsim: %s address %q: %w; use \":port\" or \"ip:port\"", network, address, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("netsim: %s address %q: port %q is not a number in [0, 65535]", network, address, portText)
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("netsim: %s address %q: %q is not an IP address; the simulator has no DNS", network, address, host)
		}
		a = a.Unmap()
		if !a.IsUnspecified() {
			if a != nd.addr {
				return netip.AddrPort{}, fmt.Errorf("netsim: %s address %q: host %s has only address %s: %w", network, address, nd.name, nd.addr, syscall.EADDRNOTAVAIL)
			}
			ip = a
		}
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// parseDial parses the "ip:port" of a Dial or WriteTo.
func parseDial(network, address string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("netsim: dial %s %q: %w; give \"ip:port\" (the simulator has no DNS)", network, address, err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().Is4() {
		return netip.AddrPort{}, fmt.Errorf("netsim: dial %s %q: not an IPv4 address; the simulator is IPv4 only", network, address)
	}
	return ap, nil
}

// checkNetwork accepts the IPv4 networks of one protocol.
func checkNetwork(network string, proto proto) error {
	name := proto.String()
	if network == name || network == name+"4" {
		return nil
	}
	return fmt.Errorf("netsim: network %q is not supported here; use %q (the simulator is IPv4 only): %w", network, name, net.UnknownNetworkError(network))
}
