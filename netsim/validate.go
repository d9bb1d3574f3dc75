package netsim

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
)

// Address plan of the simulator, used for every Host whose Addr is zero. It
// depends only on the order of hosts and sites in the Topology, so a topology
// gets the same addresses on every run:
//
//   - public hosts: 203.0.113.1, .2, ... in order (TEST-NET-3, RFC 5737);
//   - the router of the i-th site (counting from 0): 198.51.100.(i+1)
//     (TEST-NET-2), its public address;
//   - hosts of the i-th site: 192.168.(i+1).2, .3, ... in order (.1 is left
//     to the router by convention).
//
// Addresses given explicitly are kept and skipped by the plan. Two sites may
// use the same private addresses, as two homes do.
var (
	publicHostRange = netip.MustParsePrefix("203.0.113.0/24")
	routerRange     = netip.MustParsePrefix("198.51.100.0/24")
)

// minMTU is the smallest MTU IPv4 allows (RFC 791: every host must accept a
// 68-byte datagram unfragmented).
const minMTU = 68

// maxSites is how many sites the plan can number in 192.168.N.0/24.
const maxSites = 254

// addressPlan is a checked Topology with every address filled in.
type addressPlan struct {
	topo    Topology     // deep copy; every Host.Addr is set
	routers []netip.Addr // public address of each site's router, by site index
}

// Validate reports the first thing wrong with t: a missing or repeated name,
// a link, NAT or firewall value out of range, or conflicting addresses.
func (t Topology) Validate() error {
	_, err := t.plan()
	return err
}

// Addressed returns a copy of t with every Host.Addr filled in by the
// address plan, and the public address of each site's router, by site index.
// Both backends number a topology this way, so a test sees the same
// addresses in the simulator and in the kernel lab.
func (t Topology) Addressed() (Topology, []netip.Addr, error) {
	p, err := t.plan()
	return p.topo, p.routers, err
}

func (t Topology) plan() (addressPlan, error) {
	if err := t.checkValues(); err != nil {
		return addressPlan{}, err
	}
	p := addressPlan{topo: t.clone(), routers: make([]netip.Addr, len(t.Sites))}

	// Every address the public side uses or that a site host claims
	// explicitly; the plan never hands these out again.
	taken := map[netip.Addr]string{}
	for _, h := range t.Public {
		if !h.Addr.IsValid() {
			continue
		}
		if err := checkHostAddr(h, true); err != nil {
			return addressPlan{}, err
		}
		if other, dup := taken[h.Addr]; dup {
			return addressPlan{}, fmt.Errorf("public host %q: address %s is already used by %s; give each public host its own address", h.Name, h.Addr, other)
		}
		taken[h.Addr] = fmt.Sprintf("public host %q", h.Name)
	}
	siteExplicit := map[netip.Addr]string{}
	for _, s := range t.Sites {
		inSite := map[netip.Addr]string{}
		for _, h := range s.Hosts {
			if !h.Addr.IsValid() {
				continue
			}
			if err := checkHostAddr(h, false); err != nil {
				return addressPlan{}, err
			}
			if other, dup := inSite[h.Addr]; dup {
				return addressPlan{}, fmt.Errorf("site %q: hosts %q and %q both have address %s; give each host of a site its own address", s.Name, other, h.Name, h.Addr)
			}
			if other, dup := taken[h.Addr]; dup {
				return addressPlan{}, fmt.Errorf("site %q host %q: address %s is also used by %s on the internet; pick a private address", s.Name, h.Name, h.Addr, other)
			}
			inSite[h.Addr] = h.Name
			siteExplicit[h.Addr] = fmt.Sprintf("site %q host %q", s.Name, h.Name)
		}
	}

	next := func(r netip.Prefix, from netip.Addr, used func(netip.Addr) bool) (netip.Addr, bool) {
		for a := from; r.Contains(a) && a != lastOf(r); a = a.Next() {
			if !used(a) {
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	publicUsed := func(a netip.Addr) bool {
		_, pub := taken[a]
		_, site := siteExplicit[a]
		return pub || site
	}
	cursor := publicHostRange.Addr().Next()
	for i, h := range p.topo.Public {
		if h.Addr.IsValid() {
			continue
		}
		a, ok := next(publicHostRange, cursor, publicUsed)
		if !ok {
			return addressPlan{}, fmt.Errorf("public host %q: no free address left in %s; set Addr explicitly", h.Name, publicHostRange)
		}
		p.topo.Public[i].Addr = a
		taken[a] = fmt.Sprintf("public host %q", h.Name)
		cursor = a.Next()
	}
	cursor = routerRange.Addr().Next()
	for i, s := range p.topo.Sites {
		a, ok := next(routerRange, cursor, publicUsed)
		if !ok {
			return addressPlan{}, fmt.Errorf("site %q: no free router address left in %s; use fewer sites", s.Name, routerRange)
		}
		p.routers[i] = a
		taken[a] = fmt.Sprintf("the router of site %q", s.Name)
		cursor = a.Next()
	}

	for i, s := range p.topo.Sites {
		inSite := map[netip.Addr]bool{}
		for _, h := range s.Hosts {
			if h.Addr.IsValid() {
				inSite[h.Addr] = true
			}
		}
		var lan netip.Prefix
		for j, h := range s.Hosts {
			if h.Addr.IsValid() {
				continue
			}
			if i >= maxSites {
				return addressPlan{}, fmt.Errorf("site %q host %q: only the first %d sites get automatic addresses; set Addr explicitly", s.Name, h.Name, maxSites)
			}
			if !lan.IsValid() {
				lan = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i + 1), 0}), 24)
				cursor = lan.Addr().Next().Next()
			}
			a, ok := next(lan, cursor, func(a netip.Addr) bool { return inSite[a] })
			if !ok {
				return addressPlan{}, fmt.Errorf("site %q host %q: no free address left in %s; set Addr explicitly", s.Name, h.Name, lan)
			}
			p.topo.Sites[i].Hosts[j].Addr = a
			inSite[a] = true
			cursor = a.Next()
		}
	}
	return p, nil
}

// checkValues checks names and every link, NAT and firewall setting.
func (t Topology) checkValues() error {
	hosts := map[string]bool{}
	checkHost := func(where string, h Host) error {
		if h.Name == "" {
			return fmt.Errorf("%s: a host has no name; name every host", where)
		}
		if hosts[h.Name] {
			return fmt.Errorf("%s: host name %q is used twice; host names must be unique in the whole topology", where, h.Name)
		}
		hosts[h.Name] = true
		if err := h.Link.check(); err != nil {
			return fmt.Errorf("host %q link: %w", h.Name, err)
		}
		return nil
	}
	for _, h := range t.Public {
		if err := checkHost("public hosts", h); err != nil {
			return err
		}
	}
	sites := map[string]bool{}
	for _, s := range t.Sites {
		if s.Name == "" {
			return errors.New("a site has no name; name every site")
		}
		if sites[s.Name] {
			return fmt.Errorf("site name %q is used twice; site names must be unique", s.Name)
		}
		sites[s.Name] = true
		if err := s.Uplink.check(); err != nil {
			return fmt.Errorf("site %q uplink: %w", s.Name, err)
		}
		if err := s.NAT.check(); err != nil {
			return fmt.Errorf("site %q NAT: %w", s.Name, err)
		}
		for _, port := range s.Firewall.AllowTCPPorts {
			if port == 0 {
				return fmt.Errorf("site %q firewall: AllowTCPPorts lists port 0; list real destination ports such as 443", s.Name)
			}
		}
		for _, h := range s.Hosts {
			if err := checkHost(fmt.Sprintf("site %q", s.Name), h); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l Link) check() error {
	switch {
	case l.Latency < 0:
		return fmt.Errorf("latency %v is negative; use 0 or more", l.Latency)
	case l.Jitter < 0:
		return fmt.Errorf("jitter %v is negative; use 0 or more", l.Jitter)
	case math.IsNaN(l.Loss) || l.Loss < 0 || l.Loss > 1:
		return fmt.Errorf("loss %v is outside [0, 1]; give a probability such as 0.01", l.Loss)
	case l.Bandwidth < 0:
		return fmt.Errorf("bandwidth %d is negative; use bits per second, or 0 for unlimited", l.Bandwidth)
	case l.QueueBytes < 0:
		return fmt.Errorf("queue of %d bytes is negative; use 0 for the default", l.QueueBytes)
	case l.MTU != 0 && (l.MTU < minMTU || l.MTU > math.MaxUint16):
		return fmt.Errorf("MTU %d is outside [%d, %d]; use 0 for 1500", l.MTU, minMTU, math.MaxUint16)
	}
	return nil
}

func (n NAT) check() error {
	for _, b := range []struct {
		what string
		b    Behavior
	}{{"mapping", n.Mapping}, {"filtering", n.Filtering}} {
		if b.b < EndpointIndependent || b.b > AddressAndPortDependent {
			return fmt.Errorf("%s behaviour %v is unknown; use EndpointIndependent, AddressDependent or AddressAndPortDependent", b.what, b.b)
		}
	}
	if n.MappingTimeout < 0 {
		return fmt.Errorf("mapping timeout %v is negative; use 0 for DefaultMappingTimeout", n.MappingTimeout)
	}
	return nil
}

// checkHostAddr checks an explicitly given address.
func checkHostAddr(h Host, public bool) error {
	a := h.Addr
	switch {
	case !a.Is4():
		return fmt.Errorf("host %q: address %s is not IPv4; the simulator is IPv4 only", h.Name, a)
	case !a.IsGlobalUnicast():
		return fmt.Errorf("host %q: address %s is not a unicast host address", h.Name, a)
	case public && a.IsPrivate():
		return fmt.Errorf("public host %q: address %s is private; public hosts need a public address (or leave Addr zero)", h.Name, a)
	}
	return nil
}

// lastOf is the broadcast address of an IPv4 prefix, never handed out.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// clone copies t deeply enough that filling in addresses leaves t untouched.
func (t Topology) clone() Topology {
	c := t
	c.Public = append([]Host(nil), t.Public...)
	c.Sites = append([]Site(nil), t.Sites...)
	for i := range c.Sites {
		c.Sites[i].Hosts = append([]Host(nil), t.Sites[i].Hosts...)
	}
	return c
}
