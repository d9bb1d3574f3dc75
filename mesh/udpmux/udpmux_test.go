package udpmux_test

import (
	"bytes"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/udpmux"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"
)

// handler strips a leading 0x01 (delivering from a virtual address),
// forwards what starts 0x02 to fwd, drops the rest, and redirects the
// virtual address to to with the prefix "P". (QUIC packets have the 0x40
// bit set: they never reach it.)
type handler struct {
	fwd, to *net.UDPAddr
}

var virtual = udpmux.VirtualAddr(7)

func (h handler) Inbound(p []byte, from *net.UDPAddr) (udpmux.Action, []byte, *net.UDPAddr) {
	switch p[0] {
	case 0x01:
		return udpmux.Deliver, p[1:], virtual
	case 0x02:
		return udpmux.Forward, p, h.fwd
	}
	return udpmux.Drop, nil, nil
}

func (h handler) Redirect(to *net.UDPAddr) ([]byte, *net.UDPAddr, bool) {
	if to.String() != virtual.String() {
		return nil, nil, false
	}
	return []byte("P"), h.to, true
}

// plain hides a *net.UDPConn's extras, for the plain wrapper.
type plain struct{ net.PacketConn }

func listen(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c net.PacketConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	n, _, err := c.ReadFrom(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

// TestMux: QUIC packets pass untouched; the handler's packets are
// delivered rewritten, forwarded or dropped; writes to a virtual address
// go to the real one with the prefix; a path conn writes to its address.
func TestMux(t *testing.T) {
	for _, mode := range []string{"plain", "batched"} {
		t.Run(mode, func(t *testing.T) {
			sock, peer, fwd := listen(t), listen(t), listen(t)
			var pc net.PacketConn = sock
			if mode == "plain" {
				pc = plain{sock}
			}
			h := handler{fwd: fwd.LocalAddr().(*net.UDPAddr), to: peer.LocalAddr().(*net.UDPAddr)}
			mux := udpmux.New(pc, h)
			_, batched := mux.(interface {
				ReadBatch([]ipv4.Message, int) (int, error)
			})
			require.Equal(t, mode == "batched", batched)

			for _, p := range []string{"\x03dropped", "\x02fwd", "\x40quic", "\x01stripped", "\x02fwd2", "\x41quic2"} {
				_, err := peer.WriteTo([]byte(p), sock.LocalAddr())
				require.NoError(t, err)
			}
			var got []string
			var from []string
			if batched {
				got, from = readBatch(t, mux, 3)
			} else {
				for range 3 {
					buf := make([]byte, 2000)
					n, a, err := mux.ReadFrom(buf)
					require.NoError(t, err)
					got, from = append(got, string(buf[:n])), append(from, a.String())
				}
			}
			require.Equal(t, []string{"\x40quic", "stripped", "\x41quic2"}, got)
			require.Equal(t, []string{peer.LocalAddr().String(), virtual.String(), peer.LocalAddr().String()}, from)
			require.Equal(t, "\x02fwd", read(t, fwd))
			require.Equal(t, "\x02fwd2", read(t, fwd))

			_, err := mux.WriteTo([]byte("\x40hello"), virtual)
			require.NoError(t, err)
			require.Equal(t, "P\x40hello", read(t, peer))
			_, err = mux.WriteTo([]byte("\x40nowhere"), udpmux.VirtualAddr(8))
			require.NoError(t, err, "an unknown virtual address drops, as a network would")

			path := mux.PathConn(fwd.LocalAddr().(*net.UDPAddr))
			defer path.Close()
			_, err = path.WriteTo([]byte("via path"), peer.LocalAddr())
			require.NoError(t, err)
			require.Equal(t, "via path", read(t, fwd))
			require.True(t, path.Deliver([]byte("delivered"), virtual))
			buf := make([]byte, 100)
			n, a, err := path.ReadFrom(buf)
			require.NoError(t, err)
			require.Equal(t, "delivered", string(buf[:n]))
			require.Equal(t, virtual.String(), a.String())
			require.NoError(t, path.SetReadDeadline(time.Now()))
			_, _, err = path.ReadFrom(buf)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		})
	}
}

// readBatch reads n datagrams with ReadBatch, as quic-go does: a buffer
// per position.
func readBatch(t *testing.T, mux udpmux.Conn, n int) (got, from []string) {
	rb := mux.(interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	})
	for len(got) < n {
		ms := make([]ipv4.Message, 8)
		for i := range ms {
			ms[i].Buffers = [][]byte{make([]byte, 1452)}
			ms[i].OOB = make([]byte, 128)
		}
		k, err := rb.ReadBatch(ms, 0)
		require.NoError(t, err)
		for _, m := range ms[:k] {
			got = append(got, string(m.Buffers[0][:m.N]))
			from = append(from, m.Addr.String())
		}
	}
	return got, from
}

// TestVirtualAddr: virtual addresses are told apart from real ones.
func TestVirtualAddr(t *testing.T) {
	require.True(t, udpmux.IsVirtual(udpmux.VirtualAddr(1)))
	require.False(t, udpmux.IsVirtual(&net.UDPAddr{IP: net.IPv4(100, 0, 0, 1), Port: 1}))
	require.False(t, udpmux.IsVirtual(&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}))
	require.NotEqual(t, udpmux.VirtualAddr(1).String(), udpmux.VirtualAddr(2).String())
	require.True(t, bytes.HasPrefix(udpmux.VirtualAddr(3).IP, []byte{1, 0}))
}

// TestWriteToTTL: a packet leaves with the TTL asked for, from an IPv4
// socket and from a dual-stack one (the address v4-mapped), while the
// socket's other packets keep the default; a socket that cannot set it
// says so.
func TestWriteToTTL(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("a packet's TTL is set on Linux only")
	}
	recv := ipv4.NewPacketConn(listen(t))
	require.NoError(t, recv.SetControlMessage(ipv4.FlagTTL, true))
	to := recv.LocalAddr().(*net.UDPAddr)
	readTTL := func() (string, int) {
		t.Helper()
		recv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, cm, _, err := recv.ReadFrom(buf)
		require.NoError(t, err)
		require.NotNil(t, cm, "the TTL came with the packet")
		return string(buf[:n]), cm.TTL
	}
	tests := []struct {
		name    string
		network string
	}{
		{"ipv4", "udp4"},
		{"dual-stack", "udp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := net.ListenPacket(tt.network, ":0")
			require.NoError(t, err)
			defer pc.Close()
			c := udpmux.New(pc, handler{})
			require.NoError(t, c.WriteToTTL([]byte("low"), to, 2))
			data, ttl := readTTL()
			require.Equal(t, "low", data)
			require.Equal(t, 2, ttl)
			_, err = c.WriteTo([]byte("default"), to)
			require.NoError(t, err)
			data, ttl = readTTL()
			require.Equal(t, "default", data)
			require.Equal(t, 64, ttl, "Linux's default TTL")
		})
	}
	c := udpmux.New(plain{listen(t)}, handler{})
	require.ErrorIs(t, c.WriteToTTL([]byte("x"), to, 2), udpmux.ErrTTLUnsupported)
}
