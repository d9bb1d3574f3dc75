package netsim

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestListenPacketAddresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := start(t, pair(1, Link{}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")
		tests := []struct {
			network, address string
			want             string // LocalAddr; "" when an error is wanted
			err              error
		}{
			{network: "udp", address: ":4242", want: "0.0.0.0:4242"},
			{network: "udp4", address: a.Addr().String() + ":4243", want: a.Addr().String() + ":4243"},
			{network: "udp", address: "0.0.0.0:4244", want: "0.0.0.0:4244"},
			{network: "udp", address: ":4242", err: syscall.EADDRINUSE},
			{network: "udp", address: b.Addr().String() + ":1", err: syscall.EADDRNOTAVAIL},
			{network: "udp6", address: ":1", err: net.UnknownNetworkError("udp6")},
			{network: "udp", address: "nohost:1"},
			{network: "udp", address: ":http"},
			{network: "udp", address: "4242"},
		}
		for _, tt := range tests {
			pc, err := a.ListenPacket(tt.network, tt.address)
			if tt.want == "" {
				require.Error(t, err, "%s %s", tt.network, tt.address)
				if tt.err != nil {
					require.ErrorIs(t, err, tt.err)
				}
				continue
			}
			require.NoError(t, err, "%s %s", tt.network, tt.address)
			addr, ok := pc.LocalAddr().(*net.UDPAddr)
			require.True(t, ok, "LocalAddr must be a *net.UDPAddr for quic-go")
			require.Equal(t, tt.want, addr.String())
		}

		pc := listenUDP(t, a, ":0")
		port := pc.LocalAddr().(*net.UDPAddr).Port
		require.GreaterOrEqual(t, port, firstEphemeral)
		require.LessOrEqual(t, port, lastEphemeral)
	})
}

func TestUDPConnSemantics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := start(t, pair(1, Link{Latency: time.Millisecond}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")
		ac, bc := listenUDP(t, a, ":1"), listenUDP(t, b, ":2")

		// A datagram larger than the buffer is truncated; the sender's
		// address is a *net.UDPAddr.
		send(t, ac, udpAddr(b.Addr(), 2), "truncated")
		buf := make([]byte, 5)
		k, from, err := bc.ReadFrom(buf)
		require.NoError(t, err)
		require.Equal(t, "trunc", string(buf[:k]))
		require.Equal(t, netip.AddrPortFrom(a.Addr(), 1), from.(*net.UDPAddr).AddrPort())

		// Read deadline: a timeout error, as from package net.
		require.NoError(t, bc.SetReadDeadline(time.Now().Add(time.Second)))
		begin := time.Now()
		_, _, err = bc.ReadFrom(buf)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var nerr net.Error
		require.ErrorAs(t, err, &nerr)
		require.True(t, nerr.Timeout())
		require.Equal(t, time.Second, time.Since(begin))

		// Moving the deadline wakes a blocked reader.
		require.NoError(t, bc.SetReadDeadline(time.Time{}))
		done := make(chan error, 1)
		go func() {
			_, _, err := bc.ReadFrom(buf)
			done <- err
		}()
		synctest.Wait()
		require.NoError(t, bc.SetReadDeadline(time.Now()))
		require.ErrorIs(t, <-done, os.ErrDeadlineExceeded)

		// Close unblocks a reader with net.ErrClosed.
		require.NoError(t, bc.SetReadDeadline(time.Time{}))
		go func() {
			_, _, err := bc.ReadFrom(buf)
			done <- err
		}()
		synctest.Wait()
		require.NoError(t, bc.Close())
		require.ErrorIs(t, <-done, net.ErrClosed)
		require.ErrorIs(t, bc.Close(), net.ErrClosed)
		_, err = bc.WriteTo([]byte("x"), udpAddr(a.Addr(), 1))
		require.ErrorIs(t, err, net.ErrClosed)

		// Bad destinations.
		_, err = ac.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(1, 2, 3, 4), Port: 1})
		require.ErrorIs(t, err, syscall.EINVAL)
		_, err = ac.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1})
		require.ErrorIs(t, err, syscall.EAFNOSUPPORT)
		_, err = ac.WriteTo(make([]byte, maxUDPPayload+1), udpAddr(b.Addr(), 2))
		require.ErrorIs(t, err, syscall.EMSGSIZE)
	})
}

// TestUDPSocketBuffer: datagrams beyond the receive buffer are dropped.
func TestUDPSocketBuffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr tracer
		n := start(t, pair(1, Link{}, Link{}), WithTrace(tr.record))
		a, b := host(t, n, "a"), host(t, n, "b")
		ac, bc := listenUDP(t, a, ":0"), listenUDP(t, b, ":2")
		require.NoError(t, bc.(interface{ SetReadBuffer(int) error }).SetReadBuffer(1000))
		for range 3 {
			send(t, ac, udpAddr(b.Addr(), 2), string(make([]byte, 400)))
		}
		require.Len(t, recvAll(t, bc, time.Second), 2)
		require.Equal(t, map[DropReason]int{DropSocketBuffer: 1}, tr.drops())
	})
}

// TestLoopback: a host reaches its own address without touching its link.
func TestLoopback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := start(t, pair(1, Link{Latency: time.Second, Loss: 1}, Link{}))
		a := host(t, n, "a")
		c1, c2 := listenUDP(t, a, ":1"), listenUDP(t, a, ":2")
		begin := time.Now()
		send(t, c1, udpAddr(a.Addr(), 2), "self")
		r, ok := recv(t, c2, time.Second)
		require.True(t, ok)
		require.Equal(t, begin, r.at)
	})
}

// TestNetworkClose: Close ends every blocked call and the network's
// goroutine (the synctest bubble would fail on a goroutine left behind), and
// nothing opens afterwards.
func TestNetworkClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, err := New(pair(1, Link{Latency: time.Second}, Link{}))
		require.NoError(t, err)
		a, b := host(t, n, "a"), host(t, n, "b")
		pc, err := a.ListenPacket("udp", ":1")
		require.NoError(t, err)
		l, err := b.Listen("tcp", ":80")
		require.NoError(t, err)
		// A packet and a SYN in flight when the network closes.
		_, err = pc.WriteTo([]byte("in flight"), udpAddr(b.Addr(), 9))
		require.NoError(t, err)

		errs := make(chan error, 3)
		go func() {
			_, _, err := pc.ReadFrom(make([]byte, 10))
			errs <- err
		}()
		go func() {
			_, err := l.Accept()
			errs <- err
		}()
		go func() {
			_, err := a.Dial(t.Context(), "tcp", netip.AddrPortFrom(b.Addr(), 80).String())
			errs <- err
		}()
		synctest.Wait()
		require.NoError(t, n.Close())
		for range 3 {
			require.ErrorIs(t, <-errs, net.ErrClosed)
		}
		require.NoError(t, n.Close(), "closing twice is fine")
		_, err = a.ListenPacket("udp", ":2")
		require.ErrorIs(t, err, net.ErrClosed)
		_, err = a.Listen("tcp", ":2")
		require.ErrorIs(t, err, net.ErrClosed)
		_, err = a.Dial(t.Context(), "tcp", netip.AddrPortFrom(b.Addr(), 80).String())
		require.ErrorIs(t, err, net.ErrClosed)
	})
}

// TestRealTime: outside a synctest bubble the network runs on the real
// clock, for quick debugging.
func TestRealTime(t *testing.T) {
	const latency = 5 * time.Millisecond
	n := start(t, pair(1, Link{Latency: latency}, Link{}))
	a, b := host(t, n, "a"), host(t, n, "b")
	go echo(listenUDP(t, b, ":7"))
	ac := listenUDP(t, a, ":0")
	begin := time.Now()
	send(t, ac, udpAddr(b.Addr(), 7), "ping")
	r, ok := recv(t, ac, 10*time.Second)
	require.True(t, ok)
	require.Equal(t, "ping", r.payload)
	require.GreaterOrEqual(t, r.at.Sub(begin), 2*latency, "a real round trip takes at least the latency")
}
