// Package kernel builds a netsim.Topology for real, out of Linux network
// namespaces, veth pairs and nftables, so that real binaries and real kernel
// NAT can be tested on the same topologies as the in-process simulator.
//
// Layout: an "internet" namespace routes between the public hosts and the
// sites' routers, one namespace per host and per site router, joined by veth
// pairs with /32 routes. Site routers NAT with nftables masquerade (plus a
// map of mappings for UDP full-cone and address-restricted filtering) and
// drop unsolicited inbound packets as home routers do. Link latency, jitter and loss come from a delay program
// on an NFQUEUE in each router namespace (this kernel has no netem);
// bandwidth from tbf; MTU from the veths.
//
// Building a lab needs root and the tools test/install-netsim-deps.sh
// installs; Available says whether they are there.
package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/netsim"
)

// closeTimeout bounds Close, which must finish even when a test is being
// torn down after a failure.
const closeTimeout = 30 * time.Second

// nftTable is the nftables table that holds a site router's NAT and firewall.
const nftTable = "jumpmesh"

// nfqueueRule is the iptables rule that hands forwarded packets to the delay
// program. --queue-bypass lets packets through while no program is bound.
var nfqueueRule = []string{"FORWARD", "-j", "NFQUEUE", "--queue-num", strconv.Itoa(queueNum), "--queue-bypass"}

// Lab is a built topology. Close it when done (t.Cleanup).
type Lab struct {
	inet       Node
	namespaces []string
	hosts      map[string]*Host
	routers    map[string]*Router

	delayers []*delayer
	queued   []string // namespaces holding nfqueueRule

	closeOnce sync.Once
	closeErr  error
}

// Host is one host of the lab.
type Host struct {
	Node
	Name string
	Addr netip.Addr // its address on its own interface (private for site hosts)
	Site string     // the site it is in; empty for public hosts
}

// Router is a site's router.
type Router struct {
	Node
	Site       string
	PublicAddr netip.Addr // the address its NAT maps to
	LANAddr    netip.Addr // its hosts' gateway
}

// Counter names an nftables counter on a site router.
type Counter string

const (
	// Unsolicited counts inbound packets from the internet that matched no
	// mapping: dropped, or accepted with NAT.AcceptUnsolicited.
	Unsolicited Counter = "unsolicited"
	// BlockedUDP counts UDP packets dropped by Firewall.BlockUDP.
	BlockedUDP Counter = "blocked_udp"
	// BlockedTCP counts new TCP connections dropped by Firewall.AllowTCPPorts.
	BlockedTCP Counter = "blocked_tcp"
)

// Build creates the namespaces, links, NAT and delay programs of t. On error
// it removes whatever it had made. A topology the kernel cannot express
// returns an error wrapping ErrUnsupported; a machine without root or tools
// one wrapping ErrUnavailable.
func Build(ctx context.Context, t netsim.Topology) (*Lab, error) {
	p, err := newPlan(newLabID(), t)
	if err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	if err := Sweep(ctx); err != nil {
		// Leftovers do not collide with a new lab's names; say so and go on.
		slog.Warn("netsim/kernel: could not remove stale lab namespaces", "err", err)
	}
	l := &Lab{
		inet:    Node{ns: p.inetNS},
		hosts:   map[string]*Host{},
		routers: map[string]*Router{},
	}
	if err := l.build(ctx, p); err != nil {
		return nil, errors.Join(fmt.Errorf("kernel lab: %w", err), l.Close())
	}
	return l, nil
}

// Host returns the host named name.
func (l *Lab) Host(name string) (*Host, error) {
	if h, ok := l.hosts[name]; ok {
		return h, nil
	}
	return nil, fmt.Errorf("kernel lab: no host %q; hosts are %s", name, strings.Join(slices.Sorted(maps.Keys(l.hosts)), ", "))
}

// Router returns the router of the site named site.
func (l *Lab) Router(site string) (*Router, error) {
	if r, ok := l.routers[site]; ok {
		return r, nil
	}
	return nil, fmt.Errorf("kernel lab: no site %q; sites are %s", site, strings.Join(slices.Sorted(maps.Keys(l.routers)), ", "))
}

// Internet is the namespace that routes between public hosts and sites.
func (l *Lab) Internet() Node { return l.inet }

// Namespaces lists every namespace of the lab.
func (l *Lab) Namespaces() []string { return slices.Clone(l.namespaces) }

// Close stops the delay programs, kills the processes left in the lab's
// namespaces and removes the namespaces, and with them every veth, route,
// nftables table and iptables rule. It is safe to call more than once.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		var errs []error
		for _, ns := range l.queued {
			// Packets stop entering the queue before the program goes.
			args := append([]string{"-w", "-t", "mangle", "-D"}, nfqueueRule...)
			errs = append(errs, runIn(ctx, ns, "", "iptables", args...))
		}
		for _, d := range l.delayers {
			errs = append(errs, d.stop())
		}
		errs = append(errs, deleteNamespaces(ctx, l.namespaces))
		if err := errors.Join(errs...); err != nil {
			l.closeErr = fmt.Errorf("kernel lab: close: %w", err)
		}
	})
	return l.closeErr
}

// Packets reads one of the router's counters.
func (r *Router) Packets(ctx context.Context, c Counter) (uint64, error) {
	out, err := r.Command(ctx, "nft", "-j", "list", "counter", "ip", nftTable, string(c)).Output()
	if err != nil {
		return 0, fmt.Errorf("read counter %s of site %q: %w", c, r.Site, err)
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("read counter %s of site %q: %w", c, r.Site, err)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("read counter %s of site %q: nft printed no counter", c, r.Site)
}

func (l *Lab) build(ctx context.Context, p *plan) error {
	l.namespaces = append(l.namespaces, p.inetNS)
	for _, h := range p.public {
		l.namespaces = append(l.namespaces, h.ns)
		l.hosts[h.name] = &Host{Node: Node{ns: h.ns}, Name: h.name, Addr: h.addr}
	}
	for _, s := range p.sites {
		l.namespaces = append(l.namespaces, s.ns)
		l.routers[s.name] = &Router{Node: Node{ns: s.ns}, Site: s.name, PublicAddr: s.public, LANAddr: s.gateway}
		for _, h := range s.hosts {
			l.namespaces = append(l.namespaces, h.ns)
			l.hosts[h.name] = &Host{Node: Node{ns: h.ns}, Name: h.name, Addr: h.addr, Site: s.name}
		}
	}

	var add strings.Builder
	for _, ns := range l.namespaces {
		fmt.Fprintf(&add, "netns add %s\n", ns)
	}
	if err := run(ctx, add.String(), "ip", "-batch", "-"); err != nil {
		return err
	}
	if err := setNamespaceSysctls(p); err != nil {
		return err
	}

	// The internet's script creates the veths into the hosts' and routers'
	// namespaces, the routers' scripts those into their hosts', so the
	// scripts run in this order.
	scripts := []*nsScript{inetScript(p)}
	for i := range p.sites {
		scripts = append(scripts, routerScript(&p.sites[i]))
	}
	for _, h := range p.public {
		scripts = append(scripts, hostScript(h, gatewayAddr))
	}
	for _, s := range p.sites {
		for _, h := range s.hosts {
			scripts = append(scripts, hostScript(h, s.gateway))
		}
	}
	for _, s := range scripts {
		if err := s.apply(ctx); err != nil {
			return err
		}
	}

	for i := range p.sites {
		s := &p.sites[i]
		ruleset, err := s.ruleset()
		if err != nil {
			return err
		}
		if err := runIn(ctx, s.ns, ruleset, "nft", "-f", "-"); err != nil {
			return fmt.Errorf("site %q: %w", s.name, err)
		}
		if err := setMappingTimeout(s); err != nil {
			return err
		}
	}

	for i, s := range scripts[:1+len(p.sites)] { // the routers
		if err := l.startDelayer(ctx, s, p.seed+int64(i)); err != nil {
			return err
		}
	}
	return nil
}

// setNamespaceSysctls sets what a fresh namespace gets wrong for a lab: forwarding is
// off in routers, and reverse-path filtering and IPv6 could drop or add
// packets behind the nftables rules' back, so both go (the topology is IPv4).
func setNamespaceSysctls(p *plan) error {
	common := []sysctl{
		{"net/ipv4/conf/all/rp_filter", "0", false},
		{"net/ipv4/conf/default/rp_filter", "0", false},
		{"net/ipv6/conf/all/disable_ipv6", "1", true},
		{"net/ipv6/conf/default/disable_ipv6", "1", true},
	}
	router := append(slices.Clone(common), sysctl{"net/ipv4/ip_forward", "1", false})
	if err := setSysctls(p.inetNS, router); err != nil {
		return err
	}
	for _, h := range p.public {
		if err := setSysctls(h.ns, common); err != nil {
			return err
		}
	}
	for _, s := range p.sites {
		if err := setSysctls(s.ns, router); err != nil {
			return err
		}
		for _, h := range s.hosts {
			if err := setSysctls(h.ns, common); err != nil {
				return err
			}
		}
	}
	return nil
}

// setMappingTimeout sets how long an idle UDP mapping lives. It runs after
// the ruleset is loaded: where conntrack is a module, its settings appear
// only once NAT rules have loaded it.
func setMappingTimeout(s *sitePlan) error {
	timeout := strconv.Itoa(s.mappingTimeout())
	return setSysctls(s.ns, []sysctl{
		{"net/netfilter/nf_conntrack_udp_timeout", timeout, false},
		// Applies once replies were seen; real NATs do not tell the two
		// apart.
		{"net/netfilter/nf_conntrack_udp_timeout_stream", timeout, false},
	})
}

type sysctl struct {
	key, value string
	optional   bool // absent when the kernel lacks the feature (IPv6)
}

func setSysctls(ns string, settings []sysctl) error {
	return Node{ns: ns}.Do(func() error {
		for _, s := range settings {
			err := os.WriteFile(filepath.Join("/proc/sys", s.key), []byte(s.value), 0)
			if err != nil && !(s.optional && errors.Is(err, fs.ErrNotExist)) {
				return fmt.Errorf("namespace %s: sysctl %s=%s: %w", ns, s.key, s.value, err)
			}
		}
		return nil
	})
}

// startDelayer starts the delay program in a router namespace whose links
// have latency, jitter or loss, then queues its forwarded packets to it.
func (l *Lab) startDelayer(ctx context.Context, s *nsScript, seed int64) error {
	if len(s.shaped) == 0 {
		return nil
	}
	node := Node{ns: s.ns}
	shapes := map[int]shape{}
	err := node.Do(func() error {
		for name, sh := range s.shaped {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return fmt.Errorf("namespace %s: %w", s.ns, err)
			}
			shapes[ifc.Index] = sh
		}
		return nil
	})
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(netnsDir, s.ns))
	if err != nil {
		return fmt.Errorf("delay program: %w", err)
	}
	defer f.Close()
	d, err := newDelayer(s.ns, int(f.Fd()), shapes, uint64(seed))
	if err != nil {
		return err
	}
	d.run()
	l.delayers = append(l.delayers, d)
	args := append([]string{"-w", "-t", "mangle", "-A"}, nfqueueRule...)
	if err := runIn(ctx, s.ns, "", "iptables", args...); err != nil {
		return err
	}
	l.queued = append(l.queued, s.ns)
	return nil
}

// ruleset is the site router's nftables ruleset: NAT on the uplink, the
// firewall, and a drop (or, with AcceptUnsolicited, a count) of unsolicited
// inbound packets.
//
// Filtering: conntrack alone forwards inbound packets only as replies from the
// exact address and port a mapping was made for (address-and-port-dependent).
// For looser UDP filtering the ruleset records each mapping after masquerade
// has made it (external port -> internal address and port, in the map
// "mappings", living as long as the mapping timeout and refreshed by outbound
// packets) and forwards a new inbound packet to a mapped port with DNAT:
// from anyone (endpoint-independent), or only from addresses the mapping has
// sent to (address-dependent, the set "peers"). TCP is always filtered by
// conntrack.
func (s *sitePlan) ruleset() (string, error) {
	masq, err := s.masquerade()
	if err != nil {
		return "", err
	}
	unsolicited := "drop"
	if s.nat.AcceptUnsolicited {
		unsolicited = "accept"
	}
	filtering := s.nat.Filtering
	timeout := s.mappingTimeout()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("table ip %s {", nftTable)
	w("  counter %s {}", Unsolicited)
	w("  counter %s {}", BlockedUDP)
	w("  counter %s {}", BlockedTCP)
	if filtering != netsim.AddressAndPortDependent {
		w("  map mappings {")
		w("    type inet_service : ipv4_addr . inet_service; flags dynamic, timeout; timeout %ds;", timeout)
		w("  }")
		if filtering == netsim.AddressDependent {
			w("  set peers {")
			w("    type inet_service . ipv4_addr; flags dynamic, timeout; timeout %ds;", timeout)
			w("  }")
		}
		w("  chain prerouting {")
		w("    type nat hook prerouting priority dstnat; policy accept;")
		switch filtering {
		case netsim.EndpointIndependent:
			w("    iifname %q meta l4proto udp ct state new dnat ip to udp dport map @mappings", wanIface)
		case netsim.AddressDependent:
			w("    iifname %q meta l4proto udp ct state new udp dport . ip saddr @peers dnat ip to udp dport map @mappings", wanIface)
		}
		w("  }")
		// After masquerade (priority srcnat), so the reply tuple holds the
		// external port.
		w("  chain record {")
		w("    type filter hook postrouting priority srcnat + 1; policy accept;")
		w("    oifname %q meta l4proto udp update @mappings { ct reply proto-dst : ct original ip saddr . ct original proto-src }", wanIface)
		if filtering == netsim.AddressDependent {
			w("    oifname %q meta l4proto udp update @peers { ct reply proto-dst . ip daddr }", wanIface)
		}
		w("  }")
	}
	w("  chain postrouting {")
	w("    type nat hook postrouting priority srcnat; policy accept;")
	w("    oifname %q %s", wanIface, masq)
	w("  }")
	w("  chain forward {")
	w("    type filter hook forward priority filter; policy accept;")
	if s.firewall.BlockUDP {
		w("    meta l4proto udp counter name %s drop", BlockedUDP)
	}
	if len(s.firewall.AllowTCPPorts) > 0 {
		ports := make([]string, len(s.firewall.AllowTCPPorts))
		for i, p := range s.firewall.AllowTCPPorts {
			ports[i] = strconv.Itoa(int(p))
		}
		w("    oifname %q ct state new tcp dport != { %s } counter name %s drop", wanIface, strings.Join(ports, ", "), BlockedTCP)
	}
	w("    iifname %q ct state established,related accept", wanIface)
	// Only the prerouting chain above DNATs, and only to a mapping.
	w("    iifname %q ct status dnat accept", wanIface)
	w("    iifname %q counter name %s %s", wanIface, Unsolicited, unsolicited)
	w("  }")
	// Unsolicited packets to the router itself matter as much: accepting
	// one is what leaves the conntrack entry that moves a later mapping.
	w("  chain input {")
	w("    type filter hook input priority filter; policy accept;")
	w("    iifname %q ct state established,related accept", wanIface)
	w("    iifname %q counter name %s %s", wanIface, Unsolicited, unsolicited)
	w("  }")
	w("}")
	return b.String(), nil
}

// nsScript is the iproute2 and tc setup of one namespace, plus the shapes of
// the links the delay program handles there.
type nsScript struct {
	ns     string
	ip, tc strings.Builder
	shaped map[string]shape // by interface name
}

func newScript(ns string) *nsScript {
	s := &nsScript{ns: ns, shaped: map[string]shape{}}
	s.ipf("link set lo up")
	return s
}

func (s *nsScript) ipf(format string, args ...any) { fmt.Fprintf(&s.ip, format+"\n", args...) }

// shapeEnd gives the local end iface of a link its MTU and bandwidth; delay
// says whether the namespace's delay program applies the link's latency,
// jitter and loss to packets crossing iface (true only on the router side).
func (s *nsScript) shapeEnd(iface string, l netsim.Link, delay bool) {
	if l.MTU != 0 {
		s.ipf("link set dev %s mtu %d", iface, l.MTU)
	}
	if l.Bandwidth > 0 {
		mtu := l.MTU
		if mtu == 0 {
			mtu = 1500
		}
		limit := l.QueueBytes
		if limit == 0 {
			limit = 64 << 10
		}
		// The bucket holds 1 ms of traffic, and at least two full
		// frames: tbf drops any packet bigger than its bucket.
		burst := max(l.Bandwidth/8/1000, int64(2*(mtu+14)))
		fmt.Fprintf(&s.tc, "qdisc add dev %s root tbf rate %dbit burst %d limit %d\n", iface, l.Bandwidth, burst, limit)
	}
	if sh := shapeOf(l); delay && !sh.isZero() {
		s.shaped[iface] = sh
	}
}

func (s *nsScript) apply(ctx context.Context) error {
	if err := run(ctx, s.ip.String(), "ip", "-netns", s.ns, "-batch", "-"); err != nil {
		return err
	}
	if s.tc.Len() > 0 {
		return run(ctx, s.tc.String(), "tc", "-netns", s.ns, "-batch", "-")
	}
	return nil
}

// inetScript sets up the internet: the shared gateway address, and a veth
// with a /32 route to each public host and each site router.
func inetScript(p *plan) *nsScript {
	s := newScript(p.inetNS)
	s.ipf("address add %s/32 dev lo", gatewayAddr)
	link := func(iface, peerNS, peerIface string, addr netip.Addr, l netsim.Link) {
		s.ipf("link add %s type veth peer name %s netns %s", iface, peerIface, peerNS)
		s.shapeEnd(iface, l, true)
		s.ipf("link set %s up", iface)
		s.ipf("route add %s/32 dev %s", addr, iface)
	}
	for i, h := range p.public {
		link(publicPeerIface(i), h.ns, hostIface, h.addr, h.link)
	}
	for i, st := range p.sites {
		link(uplinkIface(i), st.ns, wanIface, st.public, st.uplink)
	}
	return s
}

// routerScript sets up a site router: its public address on the uplink, its
// LAN address on loopback (one address for every host's veth), and a veth
// with a /32 route to each host.
func routerScript(st *sitePlan) *nsScript {
	s := newScript(st.ns)
	s.ipf("address add %s/32 dev lo", st.gateway)
	s.shapeEnd(wanIface, st.uplink, false)
	s.ipf("address add %s/32 dev %s", st.public, wanIface)
	s.ipf("link set %s up", wanIface)
	s.ipf("route add default via %s dev %s onlink", gatewayAddr, wanIface)
	for j, h := range st.hosts {
		iface := lanIface(j)
		s.ipf("link add %s type veth peer name %s netns %s", iface, hostIface, h.ns)
		s.shapeEnd(iface, h.link, true)
		s.ipf("link set %s up", iface)
		s.ipf("route add %s/32 dev %s", h.addr, iface)
	}
	return s
}

// hostScript sets up a host: its address and a default route to its router.
func hostScript(h hostPlan, gateway netip.Addr) *nsScript {
	s := newScript(h.ns)
	s.shapeEnd(hostIface, h.link, false)
	s.ipf("address add %s/32 dev %s", h.addr, hostIface)
	s.ipf("link set %s up", hostIface)
	s.ipf("route add default via %s dev %s onlink", gateway, hostIface)
	return s
}
