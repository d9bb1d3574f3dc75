package netsim

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFirewall(t *testing.T) {
	tests := []struct {
		name     string
		fw       Firewall
		udp      bool     // a UDP round trip to the server works
		tcpPorts []uint16 // ports the client reaches over TCP, of 80 and 443
	}{
		{name: "open", fw: Firewall{}, udp: true, tcpPorts: []uint16{80, 443}},
		{name: "UDP blocked", fw: Firewall{BlockUDP: true}, udp: false, tcpPorts: []uint16{80, 443}},
		{name: "TCP to 443 only", fw: Firewall{AllowTCPPorts: []uint16{443}}, udp: true, tcpPorts: []uint16{443}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracer
				n := start(t, siteAndServer(NAT{}, tt.fw), WithTrace(tr.record))
				c, s := host(t, n, "c"), host(t, n, "s")
				go echo(listenUDP(t, s, ":443"))
				for _, port := range []uint16{80, 443} {
					l := listenTCP(t, s, netip.AddrPortFrom(netip.IPv4Unspecified(), port).String())
					go func() {
						for {
							conn, err := l.Accept()
							if err != nil {
								return
							}
							_ = conn.Close()
						}
					}()
				}

				cc := listenUDP(t, c, ":0")
				send(t, cc, udpAddr(s.Addr(), 443), "quic")
				_, ok := recv(t, cc, time.Second)
				require.Equal(t, tt.udp, ok, "UDP")

				var reached []uint16
				for _, port := range []uint16{80, 443} {
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
					conn, err := c.Dial(ctx, "tcp", netip.AddrPortFrom(s.Addr(), port).String())
					cancel()
					if err == nil {
						reached = append(reached, port)
						require.NoError(t, conn.Close())
						continue
					}
					require.ErrorIs(t, err, context.DeadlineExceeded)
					var nerr net.Error
					require.ErrorAs(t, err, &nerr)
					require.True(t, nerr.Timeout())
				}
				require.Equal(t, tt.tcpPorts, reached, "TCP")

				blocked := 2 - len(tt.tcpPorts)
				if !tt.udp {
					blocked++
				}
				require.Equal(t, blocked, tr.drops()[DropFirewall])
			})
		})
	}
}

// TestFirewallBlocksInboundUDP: BlockUDP also drops UDP coming in.
func TestFirewallBlocksInboundUDP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dropped := make(chan Event, 1)
		trace := func(e Event) {
			if e.Kind == EventDrop {
				dropped <- e
			}
		}
		n := start(t, siteAndServer(NAT{}, Firewall{BlockUDP: true}), WithTrace(trace))
		sc := listenUDP(t, host(t, n, "s"), ":0")
		send(t, sc, udpAddr(routerAddr(t, n, "home"), 5000), "in")
		e := <-dropped
		require.Equal(t, DropFirewall, e.Reason)
		require.Equal(t, "router home", e.At)
	})
}
