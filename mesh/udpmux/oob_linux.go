//go:build linux

package udpmux

import (
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// oobConn wraps a *net.UDPConn so that quic-go keeps its fast paths: it is a
// quic.OOBCapablePacketConn with ReadBatch (recvmmsg), and passes GSO and
// ECN through for real addresses.
type oobConn struct {
	u     *net.UDPConn
	batch *ipv4.PacketConn
	h     Handler

	// Only the read loop uses these.
	keep []kept
	fwd  []ipv4.Message
}

// kept is a datagram of a batch that goes to quic-go.
type kept struct {
	i, off, n int
	addr      net.Addr
}

func newOOB(u *net.UDPConn, h Handler) Conn {
	return &oobConn{u: u, batch: ipv4.NewPacketConn(u), h: h}
}

// ReadBatch reads datagrams for quic-go: what the handler consumes or
// forwards is taken out of the batch, and the rest moved up to fill the
// gaps (quic-go pairs each position with its own buffer, so bytes move,
// never buffers).
func (c *oobConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	for {
		n, err := c.batch.ReadBatch(ms, flags)
		if err != nil || n == 0 {
			return n, err
		}
		if n = c.sift(ms[:n]); n > 0 {
			return n, nil
		}
	}
}

func (c *oobConn) sift(ms []ipv4.Message) int {
	c.keep, c.fwd = c.keep[:0], c.fwd[:0]
	for i := range ms {
		m := &ms[i]
		p := m.Buffers[0][:m.N]
		if m.N == 0 || isQUIC(p[0]) {
			c.keep = append(c.keep, kept{i: i, n: m.N, addr: m.Addr})
			continue
		}
		from, ok := m.Addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		act, out, addr := c.h.Inbound(p, from)
		switch act {
		case Deliver:
			c.keep = append(c.keep, kept{i: i, off: cap(p) - cap(out), n: len(out), addr: addr})
		case Forward:
			c.fwd = append(c.fwd, ipv4.Message{Buffers: [][]byte{out}, Addr: addr})
		}
	}
	// Forwarded bytes live in the batch's buffers: send them before
	// moving anything.
	for sent := 0; sent < len(c.fwd); {
		n, err := c.batch.WriteBatch(c.fwd[sent:], 0)
		if err != nil || n == 0 {
			break // best effort, as UDP
		}
		sent += n
	}
	clear(c.fwd)
	for k, e := range c.keep {
		dst, src := &ms[k], &ms[e.i]
		if k != e.i || e.off != 0 {
			copy(dst.Buffers[0], src.Buffers[0][e.off:e.off+e.n])
		}
		if k != e.i {
			dst.NN = copy(dst.OOB, src.OOB[:src.NN])
			dst.Flags = src.Flags
		}
		dst.N, dst.Addr = e.n, e.addr
	}
	n := len(c.keep)
	clear(c.keep)
	return n
}

// ReadMsgUDP reads one datagram for quic-go; quic-go reads with ReadBatch,
// but the interface asks for it.
func (c *oobConn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	for {
		n, oobn, flags, addr, err = c.u.ReadMsgUDP(b, oob)
		if err != nil || n == 0 || isQUIC(b[0]) {
			return n, oobn, flags, addr, err
		}
		act, out, to := c.h.Inbound(b[:n], addr)
		switch act {
		case Deliver:
			return copy(b, out), oobn, flags, to, nil
		case Forward:
			c.u.WriteMsgUDP(out, nil, to) // best effort, as UDP
		}
	}
}

func (c *oobConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, _, addr, err := c.ReadMsgUDP(b, nil)
	if addr == nil {
		return n, nil, err
	}
	return n, addr, err
}

// WriteMsgUDP sends a datagram, or a GSO batch of them, from quic-go. For a
// virtual address each segment gets the handler's prefix, and the batch
// stays one GSO send with segments that much longer.
func (c *oobConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	if !IsVirtual(addr) {
		return c.u.WriteMsgUDP(b, oob, addr)
	}
	prefix, dst, ok := c.h.Redirect(addr)
	if !ok {
		return len(b), len(oob), nil
	}
	seg := segmentSize(oob)
	if seg == 0 || seg >= len(b) {
		bp := prefixed(prefix, b)
		defer putBuf(bp)
		_, _, err = c.u.WriteMsgUDP(*bp, nil, dst)
		return len(b), len(oob), err
	}
	bp := bufPool.Get().(*[]byte)
	defer putBuf(bp)
	buf := (*bp)[:0]
	for off := 0; off < len(b); off += seg {
		buf = append(append(buf, prefix...), b[off:min(off+seg, len(b))]...)
	}
	*bp = buf
	_, _, err = c.u.WriteMsgUDP(buf, appendSegmentSize(nil, uint16(seg+len(prefix))), dst)
	return len(b), len(oob), err
}

func (c *oobConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.u.WriteTo(b, addr)
	}
	n, _, err := c.WriteMsgUDP(b, nil, ua)
	return n, err
}

// WriteToTTL sends b to a real address with the given TTL (hop limit),
// in an IP_TTL (IPV6_HOPLIMIT) control message: the socket's own TTL,
// which quic-go's packets use meanwhile, is left alone.
func (c *oobConn) WriteToTTL(b []byte, addr *net.UDPAddr, ttl int) error {
	level, typ := unix.IPPROTO_IP, unix.IP_TTL
	if ip := addr.AddrPort().Addr(); ip.Is6() && !ip.Is4In6() {
		level, typ = unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT
	}
	oob := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&oob[unix.CmsgSpace(0)])) = int32(ttl)
	_, _, err := c.u.WriteMsgUDP(b, oob, addr)
	return err
}

func (c *oobConn) Close() error                          { return c.u.Close() }
func (c *oobConn) LocalAddr() net.Addr                   { return c.u.LocalAddr() }
func (c *oobConn) SetDeadline(t time.Time) error         { return c.u.SetDeadline(t) }
func (c *oobConn) SetReadDeadline(t time.Time) error     { return c.u.SetReadDeadline(t) }
func (c *oobConn) SetWriteDeadline(t time.Time) error    { return c.u.SetWriteDeadline(t) }
func (c *oobConn) SetReadBuffer(n int) error             { return c.u.SetReadBuffer(n) }
func (c *oobConn) SetWriteBuffer(n int) error            { return c.u.SetWriteBuffer(n) }
func (c *oobConn) SyscallConn() (syscall.RawConn, error) { return c.u.SyscallConn() }
func (c *oobConn) PathConn(dst *net.UDPAddr) PathConn {
	return &oobPath{inbox: newInbox(), destination: newDestination(dst), c: c}
}

// oobPath is an oobConn's PathConn; quic-go sees the same capabilities as
// on the socket itself, so a migrated connection keeps GSO.
type oobPath struct {
	*inbox
	*destination
	c *oobConn
}

// ReadBatch returns what the handler delivered: one datagram, or more if
// they are waiting.
func (p *oobPath) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	d, err := p.next()
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		m := &ms[n]
		m.N, m.NN, m.Flags, m.Addr = copy(m.Buffers[0], d.data), 0, 0, d.from
		n++
		if n == len(ms) {
			return n, nil
		}
		select {
		case d = <-p.q:
		default:
			return n, nil
		}
	}
}

func (p *oobPath) ReadMsgUDP(b, _ []byte) (int, int, int, *net.UDPAddr, error) {
	d, err := p.next()
	if err != nil {
		return 0, 0, 0, nil, err
	}
	return copy(b, d.data), 0, 0, d.from, nil
}

func (p *oobPath) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, _, from, err := p.ReadMsgUDP(b, nil)
	if from == nil {
		return n, nil, err
	}
	return n, from, err
}
func (p *oobPath) WriteMsgUDP(b, oob []byte, _ *net.UDPAddr) (int, int, error) {
	return p.c.WriteMsgUDP(b, oob, p.dst())
}
func (p *oobPath) WriteTo(b []byte, _ net.Addr) (int, error) {
	n, _, err := p.c.WriteMsgUDP(b, nil, p.dst())
	return n, err
}
func (p *oobPath) LocalAddr() net.Addr                   { return p.c.LocalAddr() }
func (p *oobPath) SyscallConn() (syscall.RawConn, error) { return p.c.SyscallConn() }

// SetReadBuffer and SetWriteBuffer leave the shared socket's buffers to
// its own transport.
func (p *oobPath) SetReadBuffer(int) error  { return nil }
func (p *oobPath) SetWriteBuffer(int) error { return nil }

// segmentSize returns the UDP_SEGMENT (GSO) size in oob, or 0.
func segmentSize(oob []byte) int {
	if len(oob) == 0 {
		return 0
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_UDP && m.Header.Type == unix.UDP_SEGMENT && len(m.Data) >= 2 {
			return int(*(*uint16)(unsafe.Pointer(&m.Data[0])))
		}
	}
	return 0
}

// appendSegmentSize appends a UDP_SEGMENT control message.
func appendSegmentSize(b []byte, size uint16) []byte {
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(2))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[start+unix.CmsgSpace(0)])) = size
	return b
}
