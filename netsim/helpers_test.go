package netsim

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// start runs topo for the test; call it inside the synctest bubble.
func start(t *testing.T, topo Topology, opts ...Option) *Network {
	t.Helper()
	n, err := New(topo, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n
}

func host(t *testing.T, n *Network, name string) *Node {
	t.Helper()
	nd, err := n.Host(name)
	require.NoError(t, err)
	return nd
}

func routerAddr(t *testing.T, n *Network, site string) netip.Addr {
	t.Helper()
	a, err := n.RouterAddr(site)
	require.NoError(t, err)
	return a
}

func listenUDP(t *testing.T, nd *Node, address string) net.PacketConn {
	t.Helper()
	pc, err := nd.ListenPacket("udp", address)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

func udpAddr(a netip.Addr, port uint16) *net.UDPAddr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, port))
}

func send(t *testing.T, pc net.PacketConn, to *net.UDPAddr, payload string) {
	t.Helper()
	_, err := pc.WriteTo([]byte(payload), to)
	require.NoError(t, err)
}

type received struct {
	payload string
	from    netip.AddrPort
	at      time.Time
}

// recv reads one datagram, waiting at most wait; ok is false when none came.
func recv(t *testing.T, pc net.PacketConn, wait time.Duration) (received, bool) {
	t.Helper()
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(wait)))
	buf := make([]byte, 2048) // more than any test sends in one datagram
	k, from, err := pc.ReadFrom(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return received{}, false
	}
	require.NoError(t, err)
	return received{payload: string(buf[:k]), from: from.(*net.UDPAddr).AddrPort(), at: time.Now()}, true
}

// recvAll reads until nothing arrives for wait.
func recvAll(t *testing.T, pc net.PacketConn, wait time.Duration) []received {
	t.Helper()
	var all []received
	for {
		r, ok := recv(t, pc, wait)
		if !ok {
			return all
		}
		all = append(all, r)
	}
}

// tracer records packet events.
type tracer struct {
	mu     sync.Mutex
	events []Event
}

func (tr *tracer) record(e Event) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.events = append(tr.events, e)
}

// steps lists each event as "kind at".
func (tr *tracer) steps() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var s []string
	for _, e := range tr.events {
		s = append(s, e.Kind.String()+" "+e.At)
	}
	return s
}

// drops counts drops per reason.
func (tr *tracer) drops() map[DropReason]int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	m := map[DropReason]int{}
	for _, e := range tr.events {
		if e.Kind == EventDrop {
			m[e.Reason]++
		}
	}
	return m
}
