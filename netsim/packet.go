package netsim

import "net/netip"

// proto is the transport protocol of a packet; NAT mappings and ports are
// kept apart per protocol.
type proto uint8

const (
	protoUDP proto = iota
	protoTCP
)

func (p proto) String() string {
	if p == protoTCP {
		return "tcp"
	}
	return "udp"
}

// Header sizes counted on the wire, for MTU and bandwidth: IPv4 without
// options (20 bytes) plus UDP (8) or TCP without options (20).
const (
	udpOverhead = 28
	tcpOverhead = 40
)

// defaultTTL is the TTL a host gives its packets, Linux's default.
const defaultTTL = 64

// packet is one IPv4 packet in flight.
type packet struct {
	proto    proto
	src, dst netip.AddrPort
	ttl      int      // hops left; a router drops the packet rather than forward it at 1
	size     int      // bytes on the wire, headers included
	data     []byte   // UDP payload
	seg      *segment // TCP segment
}

// hop is a router forwarding p, which it drops when its TTL runs out, as
// Linux does: before NAT on the way out (no mapping is made), but after
// the NAT's inbound lookup on the way in (an unsolicited packet for the
// router itself is not forwarded, and leaves its conntrack entry).
func (n *Network) hop(p *packet, where string) bool {
	if p.ttl <= 1 {
		n.drop(p, where, DropTTL)
		return false
	}
	p.ttl--
	return true
}

// reliable packets (TCP segments) are never lost, tail-dropped or checked
// against a link's MTU: the simulated TCP has no retransmission.
func (p *packet) reliable() bool { return p.proto == protoTCP }
