package netsim

import (
	"net/netip"
	"time"
)

// tcpMappingTimeout is how long an idle TCP mapping lives: RFC 5382 REQ-5's
// floor for established connections (2 hours 4 minutes).
const tcpMappingTimeout = 2*time.Hour + 4*time.Minute

// External ports a NAT picks from when it does not keep the internal port:
// every unprivileged port, as Linux masquerading does.
const (
	firstNATPort = 1024
	lastNATPort  = 65535
)

// nat is the translation state of one router, following RFC 4787 for UDP
// and applying the same behaviours to TCP.
//
// A mapping ties an internal endpoint (and, for address- or port-dependent
// mapping, a remote) to an external port of the router. Filtering lets an
// inbound packet through a mapping only from remotes the internal endpoint
// sent to (per filtering behaviour) within the mapping timeout. Outbound
// packets refresh mappings; inbound ones do not (RFC 4787 REQ-6 makes that
// optional; leaving it out means keep-alives must go outbound, as they must
// on many real NATs).
type nat struct {
	cfg      NAT
	mappings map[mappingKey]*mapping
	byPort   map[natPort]*mapping
	// traps are conntrack entries left by unsolicited inbound UDP when
	// cfg.AcceptUnsolicited; see trapped.
	traps map[trapKey]time.Time
}

type mappingKey struct {
	proto    proto
	internal netip.AddrPort
	// remote is what the mapping behaviour keys on: nothing, the remote
	// address, or address and port.
	remote netip.AddrPort
	// trapped marks a mapping made for one remote because a conntrack trap
	// held the port the internal endpoint would have used.
	trapped bool
}

type natPort struct {
	proto proto
	port  uint16
}

type trapKey struct {
	remote netip.AddrPort
	port   uint16
}

type mapping struct {
	key     mappingKey
	port    uint16
	filter  Behavior
	expires time.Time
	// allowed holds, per filtering key of a remote the internal endpoint
	// sent to, until when inbound from it is let through.
	allowed map[netip.AddrPort]time.Time
}

func newNAT(cfg NAT) *nat {
	if cfg.MappingTimeout == 0 {
		cfg.MappingTimeout = DefaultMappingTimeout
	}
	return &nat{
		cfg:      cfg,
		mappings: map[mappingKey]*mapping{},
		byPort:   map[natPort]*mapping{},
		traps:    map[trapKey]time.Time{},
	}
}

func (t *nat) timeout(pr proto) time.Duration {
	if pr == protoTCP {
		return tcpMappingTimeout
	}
	return t.cfg.MappingTimeout
}

// behaviorKey reduces remote to what behaviour b distinguishes.
func behaviorKey(b Behavior, remote netip.AddrPort) netip.AddrPort {
	switch b {
	case AddressDependent:
		return netip.AddrPortFrom(remote.Addr(), 0)
	case AddressAndPortDependent:
		return remote
	}
	return netip.AddrPort{}
}

// outbound returns the external port for a packet from internal to remote,
// creating or refreshing the mapping; ok is false when no port is free.
func (t *nat) outbound(n *Network, pr proto, internal, remote netip.AddrPort, now time.Time) (port uint16, ok bool) {
	m := t.lookup(mappingKey{proto: pr, internal: internal, remote: remote, trapped: true}, now)
	if m == nil {
		key := mappingKey{proto: pr, internal: internal, remote: behaviorKey(t.cfg.Mapping, remote)}
		if m = t.lookup(key, now); m == nil {
			preferred := internal.Port()
			if t.cfg.RandomPorts {
				preferred = 0
			}
			if m = t.create(n, key, t.cfg.Filtering, preferred, now); m == nil {
				return 0, false
			}
		}
		if pr == protoUDP && t.trapped(remote, m.port, now) {
			// Linux keeps the source port only while the connection's
			// tuple is unique; the trap holds it, so this remote gets a
			// port of its own, and replies only from it. A mapping just
			// made above stays unrefreshed, as if never made.
			key := mappingKey{proto: pr, internal: internal, remote: remote, trapped: true}
			if m = t.create(n, key, AddressAndPortDependent, 0, now); m == nil {
				return 0, false
			}
		}
	}
	m.expires = now.Add(t.timeout(pr))
	m.allowed[behaviorKey(m.filter, remote)] = m.expires
	return m.port, true
}

// inbound returns the internal endpoint a packet from remote to the external
// port goes to, or why it is dropped.
func (t *nat) inbound(pr proto, remote netip.AddrPort, port uint16, now time.Time) (netip.AddrPort, DropReason) {
	if pr == protoUDP && t.trapped(remote, port, now) {
		t.traps[trapKey{remote, port}] = now.Add(t.cfg.MappingTimeout)
		return netip.AddrPort{}, DropConntrack
	}
	reason := DropNoMapping
	if m := t.byPort[natPort{pr, port}]; m != nil && now.Before(m.expires) {
		if m.filter == EndpointIndependent {
			return m.key.internal, NotDropped
		}
		if until, ok := m.allowed[behaviorKey(m.filter, remote)]; ok && now.Before(until) {
			return m.key.internal, NotDropped
		}
		reason = DropNATFiltered
	}
	if pr == protoUDP && t.cfg.AcceptUnsolicited {
		t.traps[trapKey{remote, port}] = now.Add(t.cfg.MappingTimeout)
	}
	return netip.AddrPort{}, reason
}

// trapped reports whether an unsolicited packet from remote to port left a
// conntrack entry that still lives.
//
// This is the Linux trap of shared/reference/nat-traversal.md, as the
// simulator states it: with AcceptUnsolicited, a UDP packet from remote R to
// external port P that the NAT does not forward leaves an entry (R, P) that
// lives for MappingTimeout after the last such packet. While it lives,
// packets from R to P are absorbed by the router even once the internal
// host sends to R, and a packet from the internal endpoint mapped to P
// towards R leaves on a new random port, mapped for R alone.
func (t *nat) trapped(remote netip.AddrPort, port uint16, now time.Time) bool {
	if !t.cfg.AcceptUnsolicited {
		return false
	}
	k := trapKey{remote, port}
	until, ok := t.traps[k]
	if ok && !now.Before(until) {
		delete(t.traps, k)
		return false
	}
	return ok
}

// lookup returns the live mapping for key, forgetting it once expired.
func (t *nat) lookup(key mappingKey, now time.Time) *mapping {
	m := t.mappings[key]
	if m == nil {
		return nil
	}
	if !now.Before(m.expires) {
		t.remove(m)
		return nil
	}
	return m
}

func (t *nat) remove(m *mapping) {
	delete(t.mappings, m.key)
	if t.byPort[natPort{m.key.proto, m.port}] == m {
		delete(t.byPort, natPort{m.key.proto, m.port})
	}
}

// create makes a mapping on preferred if it is free (0: no preference),
// else on a random free port; nil when every port is taken.
func (t *nat) create(n *Network, key mappingKey, filter Behavior, preferred uint16, now time.Time) *mapping {
	free := func(port uint16) bool {
		if key.trapped && t.trapped(key.remote, port, now) {
			return false
		}
		m := t.byPort[natPort{key.proto, port}]
		if m == nil {
			return true
		}
		if !now.Before(m.expires) {
			t.remove(m)
			return true
		}
		return false
	}
	port := preferred
	if port == 0 || !free(port) {
		port = 0
		const count = lastNATPort - firstNATPort + 1
		start := n.rand.IntN(count)
		for i := range count {
			if p := uint16(firstNATPort + (start+i)%count); free(p) {
				port = p
				break
			}
		}
		if port == 0 {
			return nil
		}
	}
	m := &mapping{key: key, port: port, filter: filter, allowed: map[netip.AddrPort]time.Time{}}
	t.mappings[key] = m
	t.byPort[natPort{key.proto, port}] = m
	return m
}
