package netsim

import (
	"math"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	ip := netip.MustParseAddr
	site := func(s Site) Topology { return Topology{Sites: []Site{s}} }
	tests := []struct {
		name string
		topo Topology
		want string // part of the error; "" for a valid topology
	}{
		{name: "empty", topo: Topology{}},
		{name: "host without name", topo: Topology{Public: []Host{{}}}, want: "has no name"},
		{name: "site without name", topo: Topology{Sites: []Site{{}}}, want: "a site has no name"},
		{
			name: "duplicate host across sites",
			topo: Topology{Public: []Host{{Name: "x"}}, Sites: []Site{{Name: "s", Hosts: []Host{{Name: "x"}}}}},
			want: `host name "x" is used twice`,
		},
		{name: "duplicate site", topo: Topology{Sites: []Site{{Name: "s"}, {Name: "s"}}}, want: `site name "s" is used twice`},
		{name: "loss above 1", topo: Topology{Public: []Host{{Name: "a", Link: Link{Loss: 1.5}}}}, want: "loss 1.5 is outside [0, 1]"},
		{name: "negative loss", topo: site(Site{Name: "s", Uplink: Link{Loss: -0.1}}), want: `site "s" uplink: loss -0.1`},
		{name: "NaN loss", topo: Topology{Public: []Host{{Name: "a", Link: Link{Loss: math.NaN()}}}}, want: "loss NaN"},
		{name: "negative latency", topo: Topology{Public: []Host{{Name: "a", Link: Link{Latency: -1}}}}, want: "latency -1ns is negative"},
		{name: "negative jitter", topo: Topology{Public: []Host{{Name: "a", Link: Link{Jitter: -1}}}}, want: "jitter"},
		{name: "negative bandwidth", topo: Topology{Public: []Host{{Name: "a", Link: Link{Bandwidth: -1}}}}, want: "bandwidth"},
		{name: "negative queue", topo: Topology{Public: []Host{{Name: "a", Link: Link{QueueBytes: -1}}}}, want: "queue"},
		{name: "tiny MTU", topo: Topology{Public: []Host{{Name: "a", Link: Link{MTU: 20}}}}, want: "MTU 20 is outside"},
		{name: "unknown behaviour", topo: site(Site{Name: "s", NAT: NAT{Filtering: 7}}), want: "filtering behaviour Behavior(7) is unknown"},
		{name: "negative timeout", topo: site(Site{Name: "s", NAT: NAT{MappingTimeout: -1}}), want: "mapping timeout"},
		{name: "port 0 allowed", topo: site(Site{Name: "s", Firewall: Firewall{AllowTCPPorts: []uint16{0}}}), want: "port 0"},
		{name: "IPv6", topo: Topology{Public: []Host{{Name: "a", Addr: ip("2001:db8::1")}}}, want: "not IPv4"},
		{name: "multicast", topo: Topology{Public: []Host{{Name: "a", Addr: ip("224.0.0.1")}}}, want: "not a unicast"},
		{name: "private public host", topo: Topology{Public: []Host{{Name: "a", Addr: ip("10.0.0.1")}}}, want: "is private"},
		{
			name: "duplicate public address",
			topo: Topology{Public: []Host{{Name: "a", Addr: ip("192.0.2.1")}, {Name: "b", Addr: ip("192.0.2.1")}}},
			want: "already used",
		},
		{
			name: "duplicate address in a site",
			topo: site(Site{Name: "s", Hosts: []Host{{Name: "a", Addr: ip("10.0.0.1")}, {Name: "b", Addr: ip("10.0.0.1")}}}),
			want: `hosts "a" and "b" both have address 10.0.0.1`,
		},
		{
			name: "site host with a public host's address",
			topo: Topology{
				Public: []Host{{Name: "p", Addr: ip("192.0.2.1")}},
				Sites:  []Site{{Name: "s", Hosts: []Host{{Name: "a", Addr: ip("192.0.2.1")}}}},
			},
			want: "also used by public host",
		},
		{
			name: "same private address in two sites",
			topo: Topology{Sites: []Site{
				{Name: "s1", Hosts: []Host{{Name: "a", Addr: ip("192.168.1.10")}}},
				{Name: "s2", Hosts: []Host{{Name: "b", Addr: ip("192.168.1.10")}}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.topo.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
			_, err = New(tt.topo)
			require.ErrorContains(t, err, tt.want, "New must reject what Validate rejects")
		})
	}
}

// TestAddressPlan: addresses are assigned in order, skipping explicit ones,
// and the same topology always gets the same addresses.
func TestAddressPlan(t *testing.T) {
	ip := netip.MustParseAddr
	topo := Topology{
		Public: []Host{{Name: "p1"}, {Name: "p2", Addr: ip("203.0.113.2")}, {Name: "p3"}},
		Sites: []Site{
			{Name: "s1", Hosts: []Host{{Name: "a"}, {Name: "b", Addr: ip("192.168.1.3")}, {Name: "c"}}},
			{Name: "s2", Hosts: []Host{{Name: "d"}}},
		},
	}
	want := map[string]netip.Addr{
		"p1": ip("203.0.113.1"),
		"p2": ip("203.0.113.2"),
		"p3": ip("203.0.113.3"),
		"a":  ip("192.168.1.2"),
		"b":  ip("192.168.1.3"),
		"c":  ip("192.168.1.4"),
		"d":  ip("192.168.2.2"),
	}
	n, err := New(topo)
	require.NoError(t, err)
	defer n.Close()
	for name, addr := range want {
		require.Equal(t, addr, host(t, n, name).Addr(), name)
	}
	require.Equal(t, ip("198.51.100.1"), routerAddr(t, n, "s1"))
	require.Equal(t, ip("198.51.100.2"), routerAddr(t, n, "s2"))
	require.False(t, topo.Public[0].Addr.IsValid(), "New must not change the caller's Topology")

	_, err = n.Host("nobody")
	require.ErrorIs(t, err, ErrUnknownHost)
	_, err = n.RouterAddr("nowhere")
	require.ErrorIs(t, err, ErrUnknownSite)
}
