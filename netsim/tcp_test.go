package netsim

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// siteAndServer is host "c" in site "home" behind nat and firewall, and the
// public host "s".
func siteAndServer(nat NAT, fw Firewall) Topology {
	return Topology{
		Seed:   1,
		Public: []Host{{Name: "s", Link: Link{Latency: 10 * time.Millisecond}}},
		Sites: []Site{{
			Name:     "home",
			NAT:      nat,
			Firewall: fw,
			Uplink:   Link{Latency: 15 * time.Millisecond},
			Hosts:    []Host{{Name: "c", Link: Link{Latency: 5 * time.Millisecond}}},
		}},
	}
}

func listenTCP(t *testing.T, nd *Node, address string) net.Listener {
	t.Helper()
	l, err := nd.Listen("tcp", address)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func dialTCP(t *testing.T, nd *Node, to netip.AddrPort) net.Conn {
	t.Helper()
	c, err := nd.Dial(t.Context(), "tcp", to.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestTCPAcrossNAT: a stream from a site host to a public server takes one
// round trip to open, carries data both ways across the NAT, and half-closes.
func TestTCPAcrossNAT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = 60 * time.Millisecond
		n := start(t, siteAndServer(NAT{Filtering: AddressAndPortDependent}, Firewall{}))
		c, s := host(t, n, "c"), host(t, n, "s")
		l := listenTCP(t, s, ":80")
		request := bytes.Repeat([]byte("request "), 100_000)

		type result struct {
			remote net.Addr
			got    []byte
			err    error
		}
		served := make(chan result, 1)
		go func() {
			conn, err := l.Accept()
			if err != nil {
				served <- result{err: err}
				return
			}
			defer conn.Close()
			got, err := io.ReadAll(conn)
			if err == nil {
				_, err = conn.Write([]byte("response"))
			}
			served <- result{remote: conn.RemoteAddr(), got: got, err: err}
		}()

		begin := time.Now()
		conn := dialTCP(t, c, netip.AddrPortFrom(s.Addr(), 80))
		require.Equal(t, rtt, time.Since(begin), "the handshake takes one round trip")
		_, err := conn.Write(request)
		require.NoError(t, err)
		require.NoError(t, conn.(interface{ CloseWrite() error }).CloseWrite())
		reply, err := io.ReadAll(conn)
		require.NoError(t, err)
		require.Equal(t, "response", string(reply), "the half-closed side still reads")

		r := <-served
		require.NoError(t, r.err)
		require.Equal(t, request, r.got)
		remote := r.remote.(*net.TCPAddr).AddrPort()
		require.Equal(t, routerAddr(t, n, "home"), remote.Addr(), "the server sees the router's address")
		require.Equal(t, conn.LocalAddr().(*net.TCPAddr).Port, int(remote.Port()), "the NAT preserved the port")
	})
}

// TestTCPBandwidth: a bulk transfer takes its size on the wire over the
// bandwidth, plus the latency.
func TestTCPBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			bandwidth = 8_000_000
			latency   = 10 * time.Millisecond
			size      = 500_000
		)
		n := start(t, pair(1, Link{Latency: latency, Bandwidth: bandwidth}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")
		l := listenTCP(t, b, ":80")
		done := make(chan time.Time, 1)
		go func() {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			k, _ := io.Copy(io.Discard, conn)
			if k == size {
				done <- time.Now()
			}
			close(done)
		}()
		conn := dialTCP(t, a, netip.AddrPortFrom(b.Addr(), 80))
		begin := time.Now()
		_, err := conn.Write(make([]byte, size))
		require.NoError(t, err)
		require.NoError(t, conn.Close())
		end, ok := <-done
		require.True(t, ok, "the server must read every byte")

		segments := (size + 1500 - tcpOverhead - 1) / (1500 - tcpOverhead)
		// The handshake's last ACK (sent as Dial returns), the data
		// segments and the FIN share the link.
		wire := size + (1+segments+1)*tcpOverhead
		want := time.Duration(wire*8)*time.Second/bandwidth + latency
		require.Equal(t, want, end.Sub(begin))
	})
}

func TestTCPRefusedAndReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = time.Millisecond
		n := start(t, pair(1, Link{Latency: latency}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")

		_, err := a.Dial(t.Context(), "tcp", netip.AddrPortFrom(b.Addr(), 81).String())
		require.ErrorIs(t, err, syscall.ECONNREFUSED)

		l := listenTCP(t, b, ":80")
		accepted := make(chan net.Conn, 1)
		go func() {
			conn, err := l.Accept()
			if err == nil {
				accepted <- conn
			}
		}()
		conn := dialTCP(t, a, netip.AddrPortFrom(b.Addr(), 80))
		server := <-accepted
		_, err = conn.Write([]byte("unread"))
		require.NoError(t, err)
		time.Sleep(latency) // virtual time: the data is due at the server now
		synctest.Wait()     // and has been delivered, unread
		require.NoError(t, server.Close(), "closing with unread data resets")
		_, err = conn.Read(make([]byte, 1))
		require.ErrorIs(t, err, syscall.ECONNRESET)
	})
}

// TestTCPFlowControl: a writer blocks once the reader's window is full, and
// resumes as the reader reads.
func TestTCPFlowControl(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := start(t, pair(1, Link{Latency: time.Millisecond}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")
		l := listenTCP(t, b, ":80")
		accepted := make(chan net.Conn, 1)
		go func() {
			conn, err := l.Accept()
			if err == nil {
				accepted <- conn
			}
		}()
		conn := dialTCP(t, a, netip.AddrPortFrom(b.Addr(), 80))
		server := <-accepted
		defer server.Close()

		require.NoError(t, conn.SetWriteDeadline(time.Now().Add(time.Second)))
		k, err := conn.Write(make([]byte, 2*tcpWindow))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.Equal(t, tcpWindow, k, "the writer sends one window, then waits for the reader")

		read := make(chan int, 1)
		go func() {
			k, _ := io.ReadFull(server, make([]byte, 2*tcpWindow))
			read <- k
		}()
		require.NoError(t, conn.SetWriteDeadline(time.Time{}))
		k, err = conn.Write(make([]byte, tcpWindow))
		require.NoError(t, err, "reading reopens the window")
		require.Equal(t, tcpWindow, k)
		require.Equal(t, 2*tcpWindow, <-read)
	})
}
