package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jumpmesh/jumpmesh/netsim"
)

// ErrUnsupported marks a topology the kernel can build only with features it
// lacks (hairpinning, address-dependent mapping, ...). Tests that also run on
// the simulator check for it with errors.Is and skip the kernel backend.
var ErrUnsupported = errors.New("not supported by the kernel lab")

var (
	// gatewayAddr is the internet's next hop for every public host and site
	// router. It lives on the internet namespace's loopback, so one address
	// serves every point-to-point veth; link-local, so never routed.
	gatewayAddr = netip.MustParseAddr("169.254.0.1")
)

// Interface names. Each lives in its own namespace, so they are short and
// fixed; the index keeps them unique and within IFNAMSIZ.
const (
	hostIface = "eth0" // a host's only interface
	wanIface  = "wan0" // a site router's uplink
)

func publicPeerIface(i int) string { return fmt.Sprintf("p%d", i) } // internet side of public host i
func uplinkIface(i int) string     { return fmt.Sprintf("s%d", i) } // internet side of site i's uplink
func lanIface(j int) string        { return fmt.Sprintf("h%d", j) } // router side of site host j

// plan is a checked topology with every namespace name and address decided.
type plan struct {
	inetNS string
	public []hostPlan
	sites  []sitePlan
	seed   int64
}

type hostPlan struct {
	name string
	ns   string
	addr netip.Addr
	link netsim.Link
}

type sitePlan struct {
	name     string
	ns       string
	public   netip.Addr // the router's address on the internet
	gateway  netip.Addr // the router's address for its hosts
	nat      netsim.NAT
	firewall netsim.Firewall
	uplink   netsim.Link
	hosts    []hostPlan
}

// newPlan checks t and names every namespace of a lab with prefix id. The
// addresses are the simulator's plan (netsim.Topology.Addressed).
func newPlan(id string, t netsim.Topology) (*plan, error) {
	t, routers, err := t.Addressed()
	if err != nil {
		return nil, fmt.Errorf("kernel lab: %w", err)
	}
	p := &plan{inetNS: id + "-inet", seed: t.Seed}
	for i, h := range t.Public {
		p.public = append(p.public, hostPlan{name: h.Name, ns: fmt.Sprintf("%s-p%d", id, i), addr: h.Addr, link: h.Link})
	}
	for i, s := range t.Sites {
		sp := sitePlan{
			name:     s.Name,
			ns:       fmt.Sprintf("%s-r%d", id, i),
			public:   routers[i],
			nat:      s.NAT,
			firewall: s.Firewall,
			uplink:   s.Uplink,
		}
		if _, err := sp.masquerade(); err != nil {
			return nil, err
		}
		inSite := map[netip.Addr]bool{}
		for j, h := range s.Hosts {
			sp.hosts = append(sp.hosts, hostPlan{name: h.Name, ns: fmt.Sprintf("%s-s%dh%d", id, i, j), addr: h.Addr, link: h.Link})
			inSite[h.Addr] = true
		}
		if sp.gateway, err = gateway(i, inSite); err != nil {
			return nil, fmt.Errorf("kernel lab: site %q: %w", s.Name, err)
		}
		p.sites = append(p.sites, sp)
	}
	return p, nil
}

// gateway is the router's LAN address: the first free one of the site's
// 192.168.(site+1).0/24. Hosts get /32 routes through the router, so a
// site's addresses need not share its subnet.
func gateway(site int, inSite map[netip.Addr]bool) (netip.Addr, error) {
	if site > 253 {
		return netip.Addr{}, errors.New("only the first 254 sites get LAN addresses; use fewer sites")
	}
	lan := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(site + 1), 0}), 24)
	for a := lan.Addr().Next(); lan.Contains(a); a = a.Next() {
		if !inSite[a] && a.As4()[3] != 255 {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free router address left in %s", lan)
}

// masquerade is the nftables statement that gives the site's NAT its mapping
// behaviour, or an error wrapping ErrUnsupported.
func (s *sitePlan) masquerade() (string, error) {
	n := s.nat
	unsupported := func(what string) error {
		return fmt.Errorf("kernel lab: site %q: %s cannot be built with nftables masquerade; use the simulator: %w", s.name, what, ErrUnsupported)
	}
	if n.Hairpinning {
		return "", unsupported("hairpinning")
	}
	switch {
	case n.Mapping == netsim.EndpointIndependent && !n.RandomPorts:
		// Conntrack keeps the source port unless another mapping holds it,
		// so every destination sees the same external port.
		return "masquerade", nil
	case n.Mapping == netsim.AddressAndPortDependent && n.RandomPorts:
		// A random port per connection, that is per destination address
		// and port.
		return "masquerade fully-random", nil
	case n.Mapping == netsim.EndpointIndependent:
		return "", unsupported("endpoint-independent mapping with random ports")
	case n.Mapping == netsim.AddressAndPortDependent:
		return "", unsupported("address-and-port-dependent mapping without random ports")
	default:
		return "", unsupported(n.Mapping.String() + " mapping")
	}
}

// mappingTimeout is the conntrack UDP timeout in the whole seconds the sysctl
// takes, rounded up.
func (s *sitePlan) mappingTimeout() int {
	t := s.nat.MappingTimeout
	if t == 0 {
		t = netsim.DefaultMappingTimeout
	}
	return int((t + time.Second - 1) / time.Second)
}
