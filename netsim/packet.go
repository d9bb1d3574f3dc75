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

// packet is one IPv4 packet in flight.
type packet struct {
	proto    proto
	src, dst netip.AddrPort
	size     int      // bytes on the wire, headers included
	data     []byte   // UDP payload
	seg      *segment // TCP segment
}

// reliable packets (TCP segments) are never lost, tail-dropped or checked
// against a link's MTU: the simulated TCP has no retransmission.
func (p *packet) reliable() bool { return p.proto == protoTCP }
