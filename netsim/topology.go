package netsim

import (
	"fmt"
	"net/netip"
	"time"
)

// Topology describes a network once, so that one test can run on either
// backend: the in-process simulator (virtual time, under testing/synctest) or
// the kernel lab (network namespaces, real binaries).
//
// The shape is the one NAT traversal is about: an "internet" with public
// hosts, and sites (homes, labs, offices) whose hosts sit behind a NAT router.
type Topology struct {
	// Seed makes every random choice (loss, jitter, NAT port allocation)
	// repeat exactly from run to run.
	Seed int64
	// Public hosts sit directly on the internet (a coordinator, a relay).
	Public []Host
	// Sites are private networks, each behind its own router.
	Sites []Site
}

// Site is a private network behind one router that does NAT and, optionally,
// firewalling.
type Site struct {
	Name string
	// NAT is how the router translates; the zero value is an
	// endpoint-independent, port-preserving NAT (the "easy" kind).
	NAT NAT
	// Firewall is what the router lets through besides NAT.
	Firewall Firewall
	// Uplink is the link between the router and the internet.
	Uplink Link
	// Hosts sit on the site's LAN.
	Hosts []Host
}

// Host is one machine.
type Host struct {
	Name string
	// Addr is optional; the backend assigns one from its ranges when zero
	// (192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 on the public side,
	// 10.x.0.0/24 and 192.168.x.0/24 inside sites).
	Addr netip.Addr
	// Link is the host's link to its network (LAN or internet).
	Link Link
}

// Link is one hop's characteristics, applied in each direction.
type Link struct {
	Latency time.Duration // one-way delay
	Jitter  time.Duration // uniform extra delay in [0, Jitter)
	Loss    float64       // probability in [0, 1] that a packet is dropped
	// Bandwidth in bits per second; 0 is unlimited.
	Bandwidth int64
	// QueueBytes bounds the queue in front of a limited link; packets that do
	// not fit are dropped (tail drop). 0 picks a default of 64 KiB.
	QueueBytes int
	// MTU in bytes; larger packets are dropped. 0 picks 1500.
	MTU int
}

// Behavior is an RFC 4787 mapping or filtering behaviour.
type Behavior int

const (
	// EndpointIndependent reuses one mapping (or accepts from anyone once a
	// mapping exists), RFC 4787 sections 4.1 and 5.
	EndpointIndependent Behavior = iota
	// AddressDependent keys on the remote address only.
	AddressDependent
	// AddressAndPortDependent keys on the remote address and port.
	AddressAndPortDependent
)

func (b Behavior) String() string {
	switch b {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressAndPortDependent:
		return "address-and-port-dependent"
	}
	return fmt.Sprintf("Behavior(%d)", int(b))
}

// DefaultMappingTimeout is RFC 4787 REQ-5's floor for UDP mappings, and what
// most home routers use.
const DefaultMappingTimeout = 30 * time.Second

// NAT is an RFC 4787 NAT.
type NAT struct {
	Mapping   Behavior
	Filtering Behavior
	// RandomPorts picks a random external port for each new mapping instead
	// of keeping the internal one (RFC 4787 section 4.2.1).
	RandomPorts bool
	// MappingTimeout is how long an idle mapping lives; 0 means
	// DefaultMappingTimeout.
	MappingTimeout time.Duration
	// Hairpinning lets two hosts of the site reach each other through the
	// router's public address (RFC 4787 section 6).
	Hairpinning bool
	// AcceptUnsolicited makes the router's firewall let unsolicited inbound
	// UDP reach the NAT instead of dropping it, as some routers do. On Linux
	// this creates a conntrack entry that can force a new external port for
	// the local peer (see shared/reference/nat-traversal.md); both settings
	// need covering.
	AcceptUnsolicited bool
}

// Symmetric is the "hard" NAT: a new random port for every destination, and
// replies accepted only from that destination.
var Symmetric = NAT{Mapping: AddressAndPortDependent, Filtering: AddressAndPortDependent, RandomPorts: true}

// Firewall is what a site's router blocks besides NAT.
type Firewall struct {
	// BlockUDP drops all UDP in both directions, as corporate networks do.
	BlockUDP bool
	// AllowTCPPorts, when not empty, lets outbound TCP through only to these
	// destination ports (for example 443); empty allows all TCP.
	AllowTCPPorts []uint16
}
