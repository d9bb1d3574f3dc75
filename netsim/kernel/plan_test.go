package kernel

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jumpmesh/jumpmesh/netsim"
)

var easyNAT = netsim.NAT{Mapping: netsim.EndpointIndependent, Filtering: netsim.AddressAndPortDependent}

func TestPlanAssignsTheSimulatorsAddresses(t *testing.T) {
	addr := netip.MustParseAddr
	p, err := newPlan("lab", netsim.Topology{
		Public: []netsim.Host{{Name: "relay"}, {Name: "fixed", Addr: addr("203.0.113.2")}, {Name: "coord"}},
		Sites: []netsim.Site{
			{Name: "home", NAT: easyNAT, Hosts: []netsim.Host{{Name: "a"}, {Name: "b"}}},
			{Name: "lab", NAT: netsim.Symmetric, Hosts: []netsim.Host{{Name: "c", Addr: addr("192.168.2.1")}, {Name: "d"}}},
		},
	})
	require.NoError(t, err)

	require.Equal(t, "lab-inet", p.inetNS)
	var public []string
	for _, h := range p.public {
		public = append(public, h.name+"="+h.addr.String()+"@"+h.ns)
	}
	require.Equal(t, []string{"relay=203.0.113.1@lab-p0", "fixed=203.0.113.2@lab-p1", "coord=203.0.113.3@lab-p2"}, public)

	require.Equal(t, addr("198.51.100.1"), p.sites[0].public)
	require.Equal(t, addr("198.51.100.2"), p.sites[1].public)
	require.Equal(t, "lab-r1", p.sites[1].ns)

	require.Equal(t, addr("192.168.1.1"), p.sites[0].gateway)
	require.Equal(t, addr("192.168.1.2"), p.sites[0].hosts[0].addr)
	require.Equal(t, addr("192.168.1.3"), p.sites[0].hosts[1].addr)
	require.Equal(t, "lab-s0h1", p.sites[0].hosts[1].ns)

	// A host holding .1 keeps it; the router takes the next free address.
	require.Equal(t, addr("192.168.2.1"), p.sites[1].hosts[0].addr)
	require.Equal(t, addr("192.168.2.2"), p.sites[1].hosts[1].addr)
	require.Equal(t, addr("192.168.2.3"), p.sites[1].gateway)
}

func TestRuleset(t *testing.T) {
	for _, tc := range []struct {
		name    string
		site    sitePlan
		want    []string
		notWant []string
	}{
		{
			name:    "easy NAT drops unsolicited",
			site:    sitePlan{name: "s", nat: easyNAT},
			want:    []string{`oifname "wan0" masquerade` + "\n", `iifname "wan0" counter name unsolicited drop`},
			notWant: []string{"fully-random", "blocked_udp drop", "blocked_tcp drop", "@mappings"},
		},
		{
			name: "symmetric NAT accepting unsolicited",
			site: sitePlan{name: "s", nat: netsim.NAT{
				Mapping: netsim.AddressAndPortDependent, Filtering: netsim.AddressAndPortDependent,
				RandomPorts: true, AcceptUnsolicited: true,
			}},
			want:    []string{"masquerade fully-random", `iifname "wan0" counter name unsolicited accept`},
			notWant: []string{"unsolicited drop"},
		},
		{
			name: "full cone",
			site: sitePlan{name: "s", nat: netsim.NAT{MappingTimeout: 20 * time.Second}},
			want: []string{
				"timeout 20s;",
				`iifname "wan0" meta l4proto udp ct state new dnat ip to udp dport map @mappings`,
				"update @mappings { ct reply proto-dst : ct original ip saddr . ct original proto-src }",
				`iifname "wan0" ct status dnat accept`,
			},
			notWant: []string{"@peers"},
		},
		{
			name: "address-restricted cone",
			site: sitePlan{name: "s", nat: netsim.NAT{Filtering: netsim.AddressDependent}},
			want: []string{
				"udp dport . ip saddr @peers dnat ip to udp dport map @mappings",
				"update @peers { ct reply proto-dst . ip daddr }",
			},
		},
		{
			name: "corporate firewall",
			site: sitePlan{name: "s", nat: easyNAT, firewall: netsim.Firewall{BlockUDP: true, AllowTCPPorts: []uint16{443, 80}}},
			want: []string{
				"meta l4proto udp counter name blocked_udp drop",
				`oifname "wan0" ct state new tcp dport != { 443, 80 } counter name blocked_tcp drop`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := tc.site.ruleset()
			require.NoError(t, err)
			for _, w := range tc.want {
				require.Contains(t, rs, w)
			}
			for _, w := range tc.notWant {
				require.NotContains(t, rs, w)
			}
		})
	}
}

func TestMappingTimeoutRoundsUpToSeconds(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		want    int
	}{
		{0, 30},
		{5 * time.Second, 5},
		{1500 * time.Millisecond, 2},
	} {
		s := sitePlan{nat: netsim.NAT{MappingTimeout: tc.timeout}}
		require.Equal(t, tc.want, s.mappingTimeout(), "timeout %v", tc.timeout)
	}
}
