package netsim

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/test/testcert"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

const alpn = "netsim-test"

// testTLS makes a self-signed Ed25519 certificate, small enough for the
// server's first flight to fit QUIC's amplification limit. Call it inside
// the bubble, so its validity matches the virtual clock.
func testTLS(t *testing.T) (server, client *tls.Config) {
	server, client = testcert.Pair(t, "netsim.test")
	server.NextProtos, client.NextProtos = []string{alpn}, []string{alpn}
	return server, client
}

// transport wraps a new UDP socket of nd, unchanged, in a quic.Transport.
func transport(t *testing.T, nd *Node, address string) *quic.Transport {
	t.Helper()
	tr := &quic.Transport{Conn: listenUDP(t, nd, address)}
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	return tr
}

func listenQUIC(t *testing.T, tr *quic.Transport, conf *tls.Config) *quic.Listener {
	t.Helper()
	ln, err := tr.Listen(conf, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ln.Close()) })
	return ln
}

// accept returns the listener's next connections on a channel.
func accept(ln *quic.Listener) <-chan *quic.Conn {
	conns := make(chan *quic.Conn, 4)
	go func() {
		defer close(conns)
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			conns <- conn
		}
	}()
	return conns
}

// TestQUICHandshakeRTT: quic-go's handshake over the simulator completes in
// exactly one round trip of virtual time.
func TestQUICHandshakeRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = 100 * time.Millisecond
		n := start(t, pair(1, Link{Latency: rtt / 4}, Link{Latency: rtt / 4}))
		a, b := host(t, n, "a"), host(t, n, "b")
		serverTLS, clientTLS := testTLS(t)
		conns := accept(listenQUIC(t, transport(t, b, ":443"), serverTLS))
		client := transport(t, a, ":0")

		begin := time.Now()
		conn, err := client.Dial(t.Context(), udpAddr(b.Addr(), 443), clientTLS, nil)
		require.NoError(t, err)
		require.Equal(t, rtt, time.Since(begin))
		defer conn.CloseWithError(0, "")

		server := <-conns
		defer server.CloseWithError(0, "")
		require.Equal(t, netip.AddrPortFrom(a.Addr(), uint16(conn.LocalAddr().(*net.UDPAddr).Port)), server.RemoteAddr().(*net.UDPAddr).AddrPort())
		require.Equal(t, "0.0.0.0", conn.LocalAddr().(*net.UDPAddr).IP.String(), "bound to \":0\", like package net")
		exchange(t, conn, server)
	})
}

// exchange sends a message from one connection to the other on a stream.
func exchange(t *testing.T, from, to *quic.Conn) {
	t.Helper()
	str, err := from.OpenStream()
	require.NoError(t, err)
	_, err = str.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, str.Close())
	in, err := to.AcceptStream(t.Context())
	require.NoError(t, err)
	got, err := io.ReadAll(in)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
}

// TestQUICHolePunch: two hosts behind port-preserving NATs that filter by
// address and port learn their external addresses from a public rendezvous
// server, then connect directly: the listener punches towards the dialer,
// and the dialer's Initial gets in. Without the punch it does not.
func TestQUICHolePunch(t *testing.T) {
	for _, punch := range []bool{true, false} {
		t.Run(fmt.Sprintf("punch %v", punch), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testQUICHolePunch(t, punch) })
		})
	}
}

func testQUICHolePunch(t *testing.T, punch bool) {
	nat := NAT{Mapping: EndpointIndependent, Filtering: AddressAndPortDependent}
	site := func(name, hostName string) Site {
		return Site{
			Name:   name,
			NAT:    nat,
			Uplink: Link{Latency: 20 * time.Millisecond},
			Hosts:  []Host{{Name: hostName, Link: Link{Latency: 5 * time.Millisecond}}},
		}
	}
	var tr tracer
	n := start(t, Topology{
		Seed:   7,
		Public: []Host{{Name: "rendezvous", Link: Link{Latency: 10 * time.Millisecond}}},
		Sites:  []Site{site("siteA", "a"), site("siteB", "b")},
	}, WithTrace(tr.record))
	rv, a, b := host(t, n, "rendezvous"), host(t, n, "a"), host(t, n, "b")
	serverTLS, clientTLS := testTLS(t)
	seen := accept(listenQUIC(t, transport(t, rv, ":443"), serverTLS))
	rvAddr := udpAddr(rv.Addr(), 443)

	// Each peer registers with the rendezvous server from the socket it
	// will use for the direct connection; the server sees its external
	// address.
	external := func(tr *quic.Transport) *net.UDPAddr {
		conn, err := tr.Dial(t.Context(), rvAddr, clientTLS, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.CloseWithError(0, "") })
		server := <-seen
		t.Cleanup(func() { _ = server.CloseWithError(0, "") })
		return server.RemoteAddr().(*net.UDPAddr)
	}
	trA, trB := transport(t, a, ":0"), transport(t, b, ":0")
	extA, extB := external(trA), external(trB)
	require.Equal(t, routerAddr(t, n, "siteA"), extA.AddrPort().Addr())
	require.Equal(t, routerAddr(t, n, "siteB"), extB.AddrPort().Addr())

	direct := accept(listenQUIC(t, trB, serverTLS))
	if punch {
		// Opens b's NAT towards a, before a's Initial gets there. (By
		// the time it reaches a's NAT, a's Initial has opened that one
		// too.) A first byte below 0x40 makes it a non-QUIC packet.
		_, err := trB.WriteTo([]byte{0}, extA)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	conn, err := trA.Dial(ctx, extB, clientTLS, nil)
	if !punch {
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Positive(t, tr.drops()[DropNATFiltered], "b's NAT filters a's Initials")
		return
	}
	require.NoError(t, err)
	defer conn.CloseWithError(0, "")
	require.Empty(t, tr.drops(), "no packet was dropped")
	peer := <-direct
	defer peer.CloseWithError(0, "")
	require.Equal(t, extB.AddrPort(), conn.RemoteAddr().(*net.UDPAddr).AddrPort())
	require.Equal(t, extA.AddrPort(), peer.RemoteAddr().(*net.UDPAddr).AddrPort())
	exchange(t, conn, peer)
}
