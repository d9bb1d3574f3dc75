// Package udpmux shares one UDP socket between quic-go and the packets that
// NAT traversal needs beside it: a Handler sees every datagram that is not
// QUIC before quic-go does and may consume it, forward it, or hand it on
// rewritten; and writes to virtual addresses (IPv6 in the discard prefix
// 100::/64, RFC 6666, which no real peer has) are redirected, with a
// prefix, to a real one. That is how a relayed QUIC connection and a direct
// one can be the same connection on the same socket: only its peer's
// address changes.
//
// On Linux, a *net.UDPConn keeps what quic-go makes of it (batched reads,
// GSO, ECN): the wrapper implements quic.OOBCapablePacketConn and its
// ReadBatch. Any other net.PacketConn (the netsim simulator's) is wrapped
// plainly.
package udpmux

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Action is what becomes of an inbound datagram.
type Action int

const (
	// Deliver hands the datagram to quic-go as the handler returned it.
	Deliver Action = iota
	// Drop consumes it.
	Drop
	// Forward sends it on to the returned address and does not deliver it.
	Forward
)

// Handler sees the datagrams that are not QUIC (first byte below 0x40) and
// the writes to virtual addresses. Both run on hot paths (the socket's
// read loop, quic-go's send loop): they must not block.
type Handler interface {
	// Inbound decides about datagram p from from. It may rewrite p in
	// place; out is the datagram to deliver or forward, a subslice of p,
	// and addr its source (Deliver) or destination (Forward).
	Inbound(p []byte, from *net.UDPAddr) (act Action, out []byte, addr *net.UDPAddr)
	// Redirect returns, for a virtual address, the prefix to put before
	// each datagram and the real destination; ok is false when the address
	// goes nowhere now, and the datagram is dropped as a network would.
	Redirect(to *net.UDPAddr) (prefix []byte, dst *net.UDPAddr, ok bool)
}

// Conn is a socket shared through a Handler: the net.PacketConn to give a
// quic.Transport, and more.
type Conn interface {
	net.PacketConn
	// PathConn returns a conn for another quic.Transport whose writes all
	// go to dst (virtual or real) through this socket. It is what
	// quic.Conn.AddPath needs to move a client connection to a new peer
	// address, which QUIC itself cannot do.
	PathConn(dst *net.UDPAddr) PathConn
	// WriteToTTL sends b to a real address with the given TTL, which
	// may stop it at a router on the way; ErrTTLUnsupported when the
	// socket cannot set a packet's TTL.
	WriteToTTL(b []byte, addr *net.UDPAddr, ttl int) error
}

// ErrTTLUnsupported: the socket cannot set a packet's TTL.
var ErrTTLUnsupported = errors.New("udpmux: the socket cannot set a packet's TTL")

// PathConn is the conn of a path's transport. Datagrams reach it only when
// the handler passes them on with Deliver (everything else arrives
// through the socket's own transport); quic-go then knows they came on
// this path, and answers path challenges on it.
type PathConn interface {
	net.PacketConn
	// Deliver queues a copy of datagram b from from; false when the
	// queue is full and it was dropped.
	Deliver(b []byte, from *net.UDPAddr) bool
	// Retarget sends the path's later writes to dst. A path whose far
	// end went out of reach can so go on another way at once: QUIC
	// cannot probe a new path while its congestion window is full of
	// packets lost on the old way, as it is mid-upload.
	Retarget(dst *net.UDPAddr)
}

// destination is where a PathConn's writes go.
type destination struct{ addr atomic.Pointer[net.UDPAddr] }

func newDestination(dst *net.UDPAddr) *destination {
	d := &destination{}
	d.addr.Store(dst)
	return d
}

func (d *destination) Retarget(dst *net.UDPAddr) { d.addr.Store(dst) }
func (d *destination) dst() *net.UDPAddr         { return d.addr.Load() }

// New wraps pc. On Linux, a *net.UDPConn gets the batched, GSO-capable
// wrapper.
func New(pc net.PacketConn, h Handler) Conn {
	if u, ok := pc.(*net.UDPConn); ok {
		if c := newOOB(u, h); c != nil {
			return c
		}
	}
	return &plainConn{pc: pc, h: h}
}

// discardPrefix is 100::/64.
var discardPrefix = netip.MustParsePrefix("100::/64")

// VirtualAddr returns the n-th virtual address.
func VirtualAddr(n uint32) *net.UDPAddr {
	var ip [16]byte
	ip[0], ip[1] = 0x01, 0x00
	binary.BigEndian.PutUint32(ip[12:], n)
	return &net.UDPAddr{IP: ip[:], Port: 1}
}

// IsVirtual reports whether a is a virtual address.
func IsVirtual(a net.Addr) bool {
	ua, ok := a.(*net.UDPAddr)
	if !ok || len(ua.IP) != net.IPv6len {
		return false
	}
	ip, _ := netip.AddrFromSlice(ua.IP)
	return discardPrefix.Contains(ip)
}

// isQUIC reports whether a datagram's first byte has QUIC's fixed bit.
func isQUIC(b byte) bool { return b&0x40 != 0 }

// prefixed returns prefix followed by b, in a buffer from pool; put it back
// with putBuf.
func prefixed(prefix, b []byte) *[]byte {
	bp := bufPool.Get().(*[]byte)
	*bp = append(append((*bp)[:0], prefix...), b...)
	return bp
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func putBuf(bp *[]byte) { bufPool.Put(bp) }

// plainConn wraps any net.PacketConn.
type plainConn struct {
	pc net.PacketConn
	h  Handler
}

func (c *plainConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.pc.ReadFrom(b)
		if err != nil || n == 0 || isQUIC(b[0]) {
			return n, from, err
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		act, out, addr := c.h.Inbound(b[:n], ua)
		switch act {
		case Deliver:
			return copy(b, out), addr, nil
		case Forward:
			c.pc.WriteTo(out, addr) // best effort, as UDP
		}
	}
}

func (c *plainConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !IsVirtual(addr) {
		return c.pc.WriteTo(b, addr)
	}
	prefix, dst, ok := c.h.Redirect(addr.(*net.UDPAddr))
	if !ok {
		return len(b), nil
	}
	bp := prefixed(prefix, b)
	defer putBuf(bp)
	if _, err := c.pc.WriteTo(*bp, dst); err != nil {
		return 0, err
	}
	return len(b), nil
}

// WriteToTTL passes the TTL on to a socket that takes one per packet
// (the simulator's does).
func (c *plainConn) WriteToTTL(b []byte, addr *net.UDPAddr, ttl int) error {
	w, ok := c.pc.(interface {
		WriteToTTL(b []byte, addr net.Addr, ttl int) (int, error)
	})
	if !ok {
		return ErrTTLUnsupported
	}
	_, err := w.WriteToTTL(b, addr, ttl)
	return err
}

func (c *plainConn) Close() error                       { return c.pc.Close() }
func (c *plainConn) LocalAddr() net.Addr                { return c.pc.LocalAddr() }
func (c *plainConn) SetDeadline(t time.Time) error      { return c.pc.SetDeadline(t) }
func (c *plainConn) SetReadDeadline(t time.Time) error  { return c.pc.SetReadDeadline(t) }
func (c *plainConn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }

// SetReadBuffer passes quic-go's request on, when the socket takes one.
func (c *plainConn) SetReadBuffer(n int) error {
	if s, ok := c.pc.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return nil
}

// SetWriteBuffer passes quic-go's request on, when the socket takes one.
func (c *plainConn) SetWriteBuffer(n int) error {
	if s, ok := c.pc.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return nil
}

func (c *plainConn) PathConn(dst *net.UDPAddr) PathConn {
	return &plainPath{inbox: newInbox(), destination: newDestination(dst), c: c}
}

// plainPath is a plainConn's PathConn.
type plainPath struct {
	*inbox
	*destination
	c *plainConn
}

func (p *plainPath) ReadFrom(b []byte) (int, net.Addr, error) {
	d, err := p.next()
	if err != nil {
		return 0, nil, err
	}
	return copy(b, d.data), d.from, nil
}
func (p *plainPath) WriteTo(b []byte, _ net.Addr) (int, error) {
	return p.c.WriteTo(b, p.dst())
}
func (p *plainPath) LocalAddr() net.Addr { return p.c.LocalAddr() }

// SetReadBuffer and SetWriteBuffer leave the shared socket to its own
// transport.
func (p *plainPath) SetReadBuffer(int) error  { return nil }
func (p *plainPath) SetWriteBuffer(int) error { return nil }

// inboxSize bounds the datagrams waiting for a path's transport; more are
// dropped, as by a full socket buffer.
const inboxSize = 256

type datagram struct {
	data []byte
	from *net.UDPAddr
}

// inbox is the read side of a path conn: what the handler delivers, until
// Close or the read deadline, which quic-go's Transport.Close sets to stop
// its read loop.
type inbox struct {
	q      chan datagram
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes
}

func newInbox() *inbox {
	return &inbox{q: make(chan datagram, inboxSize), closed: make(chan struct{}), changed: make(chan struct{})}
}

func (i *inbox) Deliver(b []byte, from *net.UDPAddr) bool {
	select {
	case i.q <- datagram{data: append([]byte(nil), b...), from: from}:
		return true
	default:
		return false
	}
}

// next waits for a datagram.
func (i *inbox) next() (datagram, error) {
	for {
		i.mu.Lock()
		deadline, changed := i.deadline, i.changed
		i.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			wait := time.Until(deadline)
			if wait <= 0 {
				return datagram{}, &net.OpError{Op: "read", Net: "udp", Err: os.ErrDeadlineExceeded}
			}
			expired = time.After(wait)
		}
		select {
		case d := <-i.q:
			return d, nil
		case <-i.closed:
			return datagram{}, &net.OpError{Op: "read", Net: "udp", Err: net.ErrClosed}
		case <-expired:
			return datagram{}, &net.OpError{Op: "read", Net: "udp", Err: os.ErrDeadlineExceeded}
		case <-changed:
		}
	}
}

func (i *inbox) Close() error {
	i.once.Do(func() { close(i.closed) })
	return nil
}

func (i *inbox) SetReadDeadline(t time.Time) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.deadline = t
	close(i.changed)
	i.changed = make(chan struct{})
	return nil
}

func (i *inbox) SetDeadline(t time.Time) error    { return i.SetReadDeadline(t) }
func (i *inbox) SetWriteDeadline(time.Time) error { return nil }
