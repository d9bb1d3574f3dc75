package main

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePublicAddrs(t *testing.T) {
	tests := []struct {
		in   []string
		want []netip.AddrPort
		err  string
	}{
		{in: nil, want: []netip.AddrPort{}},
		{in: []string{"203.0.113.7:4500", "[2001:db8::1]:4500"},
			want: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:4500"), netip.MustParseAddrPort("[2001:db8::1]:4500")}},
		{in: []string{"lab.example.com:4500"}, err: `--public-addr "lab.example.com:4500": give an IP address and a port`},
		{in: []string{"203.0.113.7"}, err: `--public-addr "203.0.113.7": give an IP address and a port`},
		{in: []string{"203.0.113.7:0"}, err: `--public-addr "203.0.113.7:0": give an IP address and a port`},
	}
	for _, tt := range tests {
		got, err := parsePublicAddrs(tt.in)
		if tt.err != "" {
			require.ErrorContains(t, err, tt.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}
