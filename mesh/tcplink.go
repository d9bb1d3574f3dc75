package mesh

import (
	"net"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/relay/relaywire"
	"github.com/quic-go/quic-go"
)

// tcpQueue bounds relayed packets waiting for quic-go's read loop; beyond
// it they are dropped, as a full socket buffer would.
const tcpQueue = 256

// tcpPath carries end-to-end packets over a TCP link to the relay. Its
// transport is separate from the UDP socket's: a peer that can reach the
// relay only over TCP has no UDP path to move to.
type tcpPath struct {
	p    *peer
	once sync.Once
	conn *tcpPacketConn
	tr   *quic.Transport
}

func newTCPPath(p *peer) *tcpPath { return &tcpPath{p: p} }

// transport returns the QUIC transport over TCP links, made on first use.
func (t *tcpPath) transport() *quic.Transport {
	t.once.Do(func() {
		t.conn = &tcpPacketConn{p: t.p, in: make(chan tcpPacket, tcpQueue), closed: make(chan struct{})}
		t.tr = &quic.Transport{Conn: t.conn}
	})
	return t.tr
}

// deliver takes a relayed packet from a TCP link.
func (t *tcpPath) deliver(b []byte) {
	t.transport()
	id, err := relaywire.DataChannel(b)
	if err != nil {
		return
	}
	v, ok := t.p.byChannel.Load(id)
	if !ok {
		return
	}
	pkt := tcpPacket{data: append([]byte(nil), b[relaywire.DataHeaderSize:]...), from: v.(*session).vaddr}
	select {
	case t.conn.in <- pkt:
	default:
	}
}

func (t *tcpPath) close() {
	if t.conn == nil {
		return
	}
	t.conn.closeOnce.Do(func() { close(t.conn.closed) })
	t.tr.Close()
}

type tcpPacket struct {
	data []byte
	from *net.UDPAddr
}

// tcpPacketConn is the net.PacketConn of the TCP path: it reads the
// packets TCP links deliver and writes to virtual addresses through the
// current link, when it is a TCP one.
type tcpPacketConn struct {
	p         *peer
	in        chan tcpPacket
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *tcpPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case pkt := <-c.in:
		return copy(b, pkt.data), pkt.from, nil
	case <-c.closed:
		return 0, nil, &net.OpError{Op: "read", Net: "tcp-relay", Err: net.ErrClosed}
	}
}

func (c *tcpPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return len(b), nil
	}
	s := c.p.session(virtualIndex(ua))
	l := c.p.link.current()
	if s == nil || l == nil || l.transport != "tcp" {
		return len(b), nil // no way there now: lost, as a packet would be
	}
	hdr := s.header.Load()
	if hdr == nil {
		return len(b), nil
	}
	l.ctrl.SendData(append(hdr[:], b...))
	return len(b), nil
}

// Close is the owner's: tcpPath.close.
func (c *tcpPacketConn) Close() error { return nil }

func (c *tcpPacketConn) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv6unspecified} }

// SetReadBuffer and SetWriteBuffer: nothing to size.
func (c *tcpPacketConn) SetReadBuffer(int) error  { return nil }
func (c *tcpPacketConn) SetWriteBuffer(int) error { return nil }

// Deadlines are not needed: the conn is closed before its transport.
func (c *tcpPacketConn) SetDeadline(time.Time) error      { return nil }
func (c *tcpPacketConn) SetReadDeadline(time.Time) error  { return nil }
func (c *tcpPacketConn) SetWriteDeadline(time.Time) error { return nil }
