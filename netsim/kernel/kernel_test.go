package kernel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jumpmesh/jumpmesh/netsim"
	"github.com/jumpmesh/jumpmesh/netsim/kernel"
)

const (
	// uplinkLatency is the one-way delay of every site's uplink in the
	// smoke topology; a round trip to a public host crosses it twice.
	uplinkLatency = 20 * time.Millisecond
	// rttTolerance is how far above 2*uplinkLatency a round trip may be.
	// The delay program wakes from Go's netpoller, whose timers have
	// millisecond resolution (up to ~1 ms late per hop, two hops); each
	// packet crosses four veths and two trips through user space; and the
	// test runs under the race detector on a shared 2-core machine, where a
	// descheduled goroutine costs a few ms. 15 ms covers that with margin
	// while still catching a delay applied twice (+40 ms) or not at all.
	rttTolerance = 15 * time.Millisecond
	// ioTimeout bounds a single exchange so a broken lab fails instead of
	// hanging; no successful exchange comes near it.
	ioTimeout = 3 * time.Second
)

// requireLab builds topo, skipping when the machine cannot, and removes it
// (checking with `ip netns list` that nothing is left) when the test ends.
func requireLab(t *testing.T, topo netsim.Topology) *kernel.Lab {
	t.Helper()
	if err := kernel.Available(); err != nil {
		t.Skipf("kernel lab test skipped: %v", err)
	}
	start := time.Now()
	lab, err := kernel.Build(t.Context(), topo)
	require.NoError(t, err)
	t.Logf("built %d namespaces in %v", len(lab.Namespaces()), time.Since(start))
	t.Cleanup(func() {
		start := time.Now()
		require.NoError(t, lab.Close())
		t.Logf("closed the lab in %v", time.Since(start))
		left := listNamespaces(t)
		for _, ns := range lab.Namespaces() {
			require.NotContains(t, left, ns, "namespace left behind after Close")
		}
	})
	return lab
}

func listNamespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	require.NoError(t, err)
	var names []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func host(t *testing.T, lab *kernel.Lab, name string) *kernel.Host {
	t.Helper()
	h, err := lab.Host(name)
	require.NoError(t, err)
	return h
}

func router(t *testing.T, lab *kernel.Lab, site string) *kernel.Router {
	t.Helper()
	r, err := lab.Router(site)
	require.NoError(t, err)
	return r
}

// udpServer echoes each datagram back prefixed with the source address it
// saw, as a STUN server would report it, and remembers every source.
type udpServer struct {
	addr  netip.Addr
	conns map[uint16]*net.UDPConn
	mu    sync.Mutex
	seen  []netip.AddrPort
}

func startUDPServer(t *testing.T, h *kernel.Host, ports ...uint16) *udpServer {
	t.Helper()
	s := &udpServer{addr: h.Addr, conns: map[uint16]*net.UDPConn{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, c := range s.conns {
			c.Close()
		}
		wg.Wait()
	})
	require.NoError(t, h.Do(func() error {
		for _, p := range ports {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(p)})
			if err != nil {
				return err
			}
			s.conns[p] = c
		}
		return nil
	}))
	for _, c := range s.conns {
		wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, src, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				s.mu.Lock()
				s.seen = append(s.seen, src)
				s.mu.Unlock()
				reply := fmt.Appendf(nil, "%s %s", buf[:n], src)
				if _, err := c.WriteToUDPAddrPort(reply, src); err != nil {
					return
				}
			}
		})
	}
	return s
}

func (s *udpServer) at(port uint16) netip.AddrPort { return netip.AddrPortFrom(s.addr, port) }

// sentFrom reports whether any datagram came from addr.
func (s *udpServer) sentFrom(addr netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.seen, func(a netip.AddrPort) bool { return a.Addr() == addr })
}

// udpClient is a UDP socket in a host's namespace.
type udpClient struct {
	conn  *net.UDPConn
	nonce atomic.Uint64
}

func newUDPClient(t *testing.T, h *kernel.Host) *udpClient {
	t.Helper()
	var c udpClient
	require.NoError(t, h.Do(func() error {
		var err error
		c.conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	}))
	t.Cleanup(func() { c.conn.Close() })
	return &c
}

func (c *udpClient) port() uint16 { return uint16(c.conn.LocalAddr().(*net.UDPAddr).Port) }

// roundTrip sends one datagram to dst and returns the source address dst saw
// and the round-trip time.
func (c *udpClient) roundTrip(t *testing.T, dst netip.AddrPort) (netip.AddrPort, time.Duration) {
	t.Helper()
	nonce := fmt.Sprint(c.nonce.Add(1))
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(ioTimeout)))
	start := time.Now()
	_, err := c.conn.WriteToUDPAddrPort([]byte(nonce), dst)
	require.NoError(t, err)
	buf := make([]byte, 1500)
	for {
		n, _, err := c.conn.ReadFromUDPAddrPort(buf)
		require.NoError(t, err, "no reply from %s", dst)
		got, seen, ok := strings.Cut(string(buf[:n]), " ")
		if got != nonce || !ok {
			continue // a late reply to an earlier probe
		}
		rtt := time.Since(start)
		ap, err := netip.ParseAddrPort(seen)
		require.NoError(t, err)
		return ap, rtt
	}
}

// read returns the next datagram.
func (c *udpClient) read(t *testing.T) string {
	t.Helper()
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(ioTimeout)))
	buf := make([]byte, 1500)
	n, _, err := c.conn.ReadFromUDPAddrPort(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

// pending returns the datagrams already queued on the socket, without
// waiting for more.
func (c *udpClient) pending(t *testing.T) []string {
	t.Helper()
	require.NoError(t, c.conn.SetReadDeadline(time.Now()))
	var got []string
	buf := make([]byte, 1500)
	for {
		n, _, err := c.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		require.NoError(t, err)
		got = append(got, string(buf[:n]))
	}
}

// tcpServer accepts connections and echoes what it reads.
type tcpServer struct {
	addr     netip.Addr
	accepted atomic.Int64
}

func startTCPServer(t *testing.T, h *kernel.Host, ports ...uint16) *tcpServer {
	t.Helper()
	s := &tcpServer{addr: h.Addr}
	var lns []net.Listener
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	require.NoError(t, h.Do(func() error {
		for _, p := range ports {
			ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", p))
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	}))
	for _, ln := range lns {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				s.accepted.Add(1)
				wg.Go(func() {
					defer c.Close()
					_, _ = io.Copy(c, c)
				})
			}
		})
	}
	return s
}

// dialTCP connects from h to dst; the socket is made in h's namespace.
func dialTCP(ctx context.Context, h *kernel.Host, dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp4", dst.String())
		return err
	})
	return c, err
}

func TestKernelSmoke(t *testing.T) {
	easy := netsim.NAT{Mapping: netsim.EndpointIndependent, Filtering: netsim.AddressAndPortDependent}
	easyAccept := easy
	easyAccept.AcceptUnsolicited = true
	hardAccept := netsim.Symmetric
	hardAccept.AcceptUnsolicited = true
	uplink := netsim.Link{Latency: uplinkLatency}
	// far and lagged add latency at both ends of a path, so that delays of
	// the internet's and a site router's delay programs must add up.
	farLink := netsim.Link{Latency: 10 * time.Millisecond, MTU: 1400, Bandwidth: 50_000_000}
	laggedLAN := netsim.Link{Latency: 5 * time.Millisecond, Jitter: 2 * time.Millisecond}
	site := func(name string, nat netsim.NAT, fw netsim.Firewall) netsim.Site {
		return netsim.Site{Name: name, NAT: nat, Firewall: fw, Uplink: uplink, Hosts: []netsim.Host{{Name: name + "-pc"}}}
	}
	lab := requireLab(t, netsim.Topology{
		Seed: 1,
		Public: []netsim.Host{
			{Name: "server"},
			{Name: "server2"},
			{Name: "far", Link: farLink},
		},
		Sites: []netsim.Site{
			site("easy-drop", easy, netsim.Firewall{}),
			site("easy-accept", easyAccept, netsim.Firewall{}),
			site("hard-drop", netsim.Symmetric, netsim.Firewall{}),
			site("hard-accept", hardAccept, netsim.Firewall{}),
			site("corp", easy, netsim.Firewall{BlockUDP: true, AllowTCPPorts: []uint16{443}}),
			site("cone", netsim.NAT{}, netsim.Firewall{}),
			site("restricted", netsim.NAT{Filtering: netsim.AddressDependent}, netsim.Firewall{}),
			{Name: "lagged", NAT: easy, Uplink: uplink, Hosts: []netsim.Host{{Name: "lagged-pc", Link: laggedLAN}}},
		},
	})
	server := startUDPServer(t, host(t, lab, "server"), 7000, 7001, 7100)
	server2 := startUDPServer(t, host(t, lab, "server2"), 7000)
	far := startUDPServer(t, host(t, lab, "far"), 7000)

	natCases := []struct {
		site      string
		symmetric bool
	}{
		{"easy-drop", false},
		{"easy-accept", false},
		{"hard-drop", true},
		{"hard-accept", true},
	}

	t.Run("mapping", func(t *testing.T) {
		for _, tc := range natCases {
			t.Run(tc.site, func(t *testing.T) {
				c := newUDPClient(t, host(t, lab, tc.site+"-pc"))
				public := router(t, lab, tc.site).PublicAddr
				var ports []uint16
				// Two ports of one server and a second server: every
				// kind of "different destination".
				for _, dst := range []netip.AddrPort{server.at(7000), server.at(7001), server2.at(7000)} {
					seen, _ := c.roundTrip(t, dst)
					require.Equal(t, public, seen.Addr(), "%s saw the wrong external address", dst)
					ports = append(ports, seen.Port())
				}
				if tc.symmetric {
					slices.Sort(ports)
					require.Len(t, slices.Compact(ports), 3, "a symmetric NAT must map each destination to its own port, got %v", ports)
				} else {
					require.Equal(t, []uint16{c.port(), c.port(), c.port()}, ports, "an endpoint-independent NAT must keep one (preserved) port for every destination")
				}
			})
		}
	})

	t.Run("latency", func(t *testing.T) {
		const samples = 5
		for _, tc := range natCases {
			t.Run(tc.site, func(t *testing.T) {
				c := newUDPClient(t, host(t, lab, tc.site+"-pc"))
				var rtts []time.Duration
				for range samples {
					_, rtt := c.roundTrip(t, server.at(7000))
					rtts = append(rtts, rtt)
				}
				slices.Sort(rtts)
				t.Logf("round trips with %v one-way uplink: min %v median %v max %v", uplinkLatency, rtts[0], rtts[samples/2], rtts[samples-1])
				require.GreaterOrEqual(t, rtts[0], 2*uplinkLatency, "round trip shorter than the configured delay")
				// The median, not the maximum: one sample can come late when
				// the shared cores deschedule a goroutine, and the median
				// still catches a delay applied twice.
				require.LessOrEqual(t, rtts[samples/2], 2*uplinkLatency+rttTolerance, "median round trip too far above the configured delay")
			})
		}
	})

	// After the host has sent to server:7000, who may send to its mapping:
	// a full cone lets anyone in, an address-restricted one only the
	// server's address, a port-restricted one only server:7000.
	t.Run("filtering", func(t *testing.T) {
		for _, tc := range []struct {
			site                 string
			otherPort, otherHost bool
		}{
			{"cone", true, true},
			{"restricted", true, false},
			{"easy-drop", false, false},
		} {
			t.Run(tc.site, func(t *testing.T) {
				r := router(t, lab, tc.site)
				c := newUDPClient(t, host(t, lab, tc.site+"-pc"))
				seen, _ := c.roundTrip(t, server.at(7000))
				require.Equal(t, c.port(), seen.Port())
				for _, from := range []struct {
					name    string
					conn    *net.UDPConn
					allowed bool
				}{
					{"another port of the server", server.conns[7001], tc.otherPort},
					{"another host", server2.conns[7000], tc.otherHost},
				} {
					before, err := r.Packets(t.Context(), kernel.Unsolicited)
					require.NoError(t, err)
					_, err = from.conn.WriteToUDPAddrPort([]byte(from.name), seen)
					require.NoError(t, err)
					if from.allowed {
						require.Equal(t, from.name, c.read(t), "a packet from %s should pass", from.name)
						continue
					}
					require.Eventually(t, func() bool {
						n, err := r.Packets(t.Context(), kernel.Unsolicited)
						return err == nil && n > before
					}, ioTimeout, 5*time.Millisecond, "a packet from %s should have been dropped as unsolicited", from.name)
					require.Empty(t, c.pending(t), "a packet from %s got through", from.name)
				}
			})
		}
	})

	// Every link on the path counts, in each direction: the LAN link (the
	// site router's delay program), the uplink and the far host's link (the
	// internet's), each with its own jitter.
	t.Run("path-latency", func(t *testing.T) {
		const samples = 5
		oneWay := laggedLAN.Latency + uplinkLatency + farLink.Latency
		maxJitter := 2 * laggedLAN.Jitter
		c := newUDPClient(t, host(t, lab, "lagged-pc"))
		var rtts []time.Duration
		for range samples {
			_, rtt := c.roundTrip(t, far.at(7000))
			rtts = append(rtts, rtt)
		}
		slices.Sort(rtts)
		t.Logf("round trips with %v one-way (+ up to %v jitter per round trip): min %v median %v max %v", oneWay, maxJitter, rtts[0], rtts[samples/2], rtts[samples-1])
		require.GreaterOrEqual(t, rtts[0], 2*oneWay)
		require.LessOrEqual(t, rtts[samples/2], 2*oneWay+maxJitter+rttTolerance, "median round trip too far above the configured delay")
	})

	// Code in Do and commands run where the host is, and the router got the
	// configured mapping timeout.
	t.Run("namespaces", func(t *testing.T) {
		pc := host(t, lab, "easy-drop-pc")
		var addrs []net.Addr
		var out []byte
		require.NoError(t, pc.Do(func() error {
			ifc, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			if addrs, err = ifc.Addrs(); err != nil {
				return err
			}
			out, err = exec.Command("ip", "-4", "-o", "address", "show", "dev", "eth0").Output()
			return err
		}))
		require.Len(t, addrs, 1)
		require.Equal(t, pc.Addr.String()+"/32", addrs[0].String())
		require.Contains(t, string(out), " "+pc.Addr.String()+"/32 ", "a process started in Do runs in the namespace")

		out, err := pc.Command(t.Context(), "ip", "-4", "-o", "address", "show", "dev", "eth0").Output()
		require.NoError(t, err)
		require.Contains(t, string(out), " "+pc.Addr.String()+"/32 ")

		out, err = router(t, lab, "easy-drop").Command(t.Context(), "cat", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout").Output()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(int(netsim.DefaultMappingTimeout.Seconds())), strings.TrimSpace(string(out)))
	})

	// MTU and bandwidth are set on both ends of the far host's link.
	t.Run("link-shaping", func(t *testing.T) {
		farHost := host(t, lab, "far")
		out, err := farHost.Command(t.Context(), "ip", "-j", "link", "show", "eth0").Output()
		require.NoError(t, err)
		var links []struct {
			MTU int `json:"mtu"`
		}
		require.NoError(t, json.Unmarshal(out, &links))
		require.Len(t, links, 1)
		require.Equal(t, farLink.MTU, links[0].MTU)

		out, err = farHost.Command(t.Context(), "tc", "-j", "qdisc", "show", "dev", "eth0").Output()
		require.NoError(t, err)
		var qdiscs []struct {
			Kind string `json:"kind"`
		}
		require.NoError(t, json.Unmarshal(out, &qdiscs))
		require.Len(t, qdiscs, 1)
		require.Equal(t, "tbf", qdiscs[0].Kind)
	})

	// An early packet from the far side, before the local host has sent
	// anything, must move the local host's later mapping to another port
	// exactly when the router accepts unsolicited packets.
	t.Run("conntrack-trap", func(t *testing.T) {
		for _, tc := range []struct {
			site      string
			movesPort bool
		}{
			{"easy-drop", false},
			{"easy-accept", true},
		} {
			t.Run(tc.site, func(t *testing.T) {
				r := router(t, lab, tc.site)
				c := newUDPClient(t, host(t, lab, tc.site+"-pc"))
				before, err := r.Packets(t.Context(), kernel.Unsolicited)
				require.NoError(t, err)

				_, err = server.conns[7100].WriteToUDPAddrPort([]byte("early punch"), netip.AddrPortFrom(r.PublicAddr, c.port()))
				require.NoError(t, err)
				require.Eventually(t, func() bool {
					n, err := r.Packets(t.Context(), kernel.Unsolicited)
					return err == nil && n > before
				}, ioTimeout, 5*time.Millisecond, "the early packet never reached the router")

				seen, _ := c.roundTrip(t, server.at(7100))
				if tc.movesPort {
					require.NotEqual(t, c.port(), seen.Port(), "accepting the early packet should have taken the port")
				} else {
					require.Equal(t, c.port(), seen.Port(), "dropping the early packet should have kept the port")
				}
			})
		}
	})

	t.Run("firewall", func(t *testing.T) {
		tcp := startTCPServer(t, host(t, lab, "server"), 443, 8080)
		pc := host(t, lab, "corp-pc")
		r := router(t, lab, "corp")

		t.Run("udp-blocked", func(t *testing.T) {
			before, err := r.Packets(t.Context(), kernel.BlockedUDP)
			require.NoError(t, err)
			c := newUDPClient(t, pc)
			_, err = c.conn.WriteToUDPAddrPort([]byte("blocked"), server.at(7000))
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				n, err := r.Packets(t.Context(), kernel.BlockedUDP)
				return err == nil && n > before
			}, ioTimeout, 5*time.Millisecond, "the UDP packet was not dropped by the BlockUDP rule")
			require.False(t, server.sentFrom(r.PublicAddr), "a UDP packet from the corp site reached the server")
		})

		t.Run("tcp-allowed-port", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
			defer cancel()
			conn, err := dialTCP(ctx, pc, netip.AddrPortFrom(tcp.addr, 443))
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(ioTimeout)))
			_, err = conn.Write([]byte("hello"))
			require.NoError(t, err)
			buf := make([]byte, 5)
			_, err = io.ReadFull(conn, buf)
			require.NoError(t, err)
			require.Equal(t, "hello", string(buf))
		})

		t.Run("tcp-other-port-blocked", func(t *testing.T) {
			before, err := r.Packets(t.Context(), kernel.BlockedTCP)
			require.NoError(t, err)
			accepted := tcp.accepted.Load()
			ctx, cancel := context.WithCancel(t.Context())
			dialed := make(chan error, 1)
			go func() {
				conn, err := dialTCP(ctx, pc, netip.AddrPortFrom(tcp.addr, 8080))
				if err == nil {
					conn.Close()
				}
				dialed <- err
			}()
			require.Eventually(t, func() bool {
				n, err := r.Packets(t.Context(), kernel.BlockedTCP)
				return err == nil && n > before
			}, ioTimeout, 5*time.Millisecond, "the SYN to port 8080 was not dropped by the AllowTCPPorts rule")
			cancel()
			require.ErrorIs(t, <-dialed, context.Canceled, "the connection to port 8080 should have hung until cancelled")
			require.Equal(t, accepted, tcp.accepted.Load(), "the server accepted a connection on a blocked port")
		})
	})
}

func TestBuildRejectsWhatTheKernelCannotBuild(t *testing.T) {
	aapd := netsim.AddressAndPortDependent
	for _, tc := range []struct {
		name string
		nat  netsim.NAT
		want string
	}{
		{"address-dependent mapping", netsim.NAT{Mapping: netsim.AddressDependent, Filtering: aapd}, "address-dependent mapping"},
		{"random ports, one mapping", netsim.NAT{Filtering: aapd, RandomPorts: true}, "endpoint-independent mapping with random ports"},
		{"symmetric, sequential ports", netsim.NAT{Mapping: aapd, Filtering: aapd}, "address-and-port-dependent mapping without random ports"},
		{"hairpinning", netsim.NAT{Filtering: aapd, Hairpinning: true}, "hairpinning"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kernel.Build(t.Context(), netsim.Topology{Sites: []netsim.Site{{Name: "home1", NAT: tc.nat}}})
			require.ErrorIs(t, err, kernel.ErrUnsupported)
			require.ErrorContains(t, err, `site "home1": `+tc.want)
			require.ErrorContains(t, err, "use the simulator")
		})
	}
}

func TestBuildRejectsInvalidTopology(t *testing.T) {
	_, err := kernel.Build(t.Context(), netsim.Topology{Public: []netsim.Host{{Name: "a"}, {Name: "a"}}})
	require.Error(t, err)
	require.False(t, errors.Is(err, kernel.ErrUnsupported), "an invalid topology is not an unsupported one: %v", err)
	require.ErrorContains(t, err, `"a"`)
}
