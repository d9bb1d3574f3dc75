package netsim

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// defaultReadBuffer is Linux's default socket receive buffer
// (net.core.rmem_default); SetReadBuffer changes it.
const defaultReadBuffer = 212992

// maxUDPPayload is the largest UDP payload IPv4 can carry.
const maxUDPPayload = 65535 - udpOverhead

// ListenPacket opens a UDP socket, like net.ListenPacket. network is "udp"
// or "udp4"; address is ":port", "ip:port" or ":0" for a random ephemeral
// port. The conn's addresses are *net.UDPAddr, so a quic.Transport takes it
// as it is.
func (nd *Node) ListenPacket(network, address string) (net.PacketConn, error) {
	if err := checkNetwork(network, protoUDP); err != nil {
		return nil, err
	}
	bind, err := nd.parseBind(network, address)
	if err != nil {
		return nil, err
	}
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: net.UDPAddrFromAddrPort(bind), Err: net.ErrClosed}
	}
	port := bind.Port()
	if port == 0 {
		var ok bool
		if port, ok = nd.ephemeral(func(p uint16) bool { return nd.udp[p] != nil }); !ok {
			return nil, &net.OpError{Op: "listen", Net: network, Addr: net.UDPAddrFromAddrPort(bind), Err: syscall.EADDRINUSE}
		}
	} else if nd.udp[port] != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: net.UDPAddrFromAddrPort(bind),
			Err: fmt.Errorf("host %s: %w", nd.name, syscall.EADDRINUSE)}
	}
	c := &udpConn{
		node:       nd,
		network:    network,
		local:      netip.AddrPortFrom(bind.Addr(), port),
		readBuffer: defaultReadBuffer,
		readable:   make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	nd.udp[port] = c
	return c, nil
}

type datagram struct {
	from netip.AddrPort
	data []byte
}

// udpConn is a UDP socket of a Node. Writes never block: a packet that does
// not fit a link's queue is dropped there, as a router would.
type udpConn struct {
	node    *Node
	network string
	local   netip.AddrPort // as bound: the host's address or 0.0.0.0

	deadlines

	readable chan struct{}
	done     chan struct{} // closed with the socket

	// Guarded by node.net.mu.
	queue      []datagram
	queued     int // payload bytes in queue
	readBuffer int
	closed     bool
}

var _ net.PacketConn = (*udpConn)(nil)

func (c *udpConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.network, Source: c.LocalAddr(), Err: err}
}

// ReadFrom reads one datagram; a datagram longer than b is truncated, as
// recvfrom does. The address is a *net.UDPAddr.
func (c *udpConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n := c.node.net
	for {
		if c.readDeadline.passed() {
			return 0, nil, c.opErr("read", os.ErrDeadlineExceeded)
		}
		n.mu.Lock()
		if c.closed {
			n.mu.Unlock()
			return 0, nil, c.opErr("read", net.ErrClosed)
		}
		if len(c.queue) > 0 {
			d := c.queue[0]
			c.queue[0] = datagram{}
			c.queue = c.queue[1:]
			c.queued -= len(d.data)
			if len(c.queue) > 0 {
				notify(c.readable) // for another reader
			}
			n.mu.Unlock()
			return copy(b, d.data), net.UDPAddrFromAddrPort(d.from), nil
		}
		n.mu.Unlock()
		select {
		case <-c.readable:
		case <-c.done:
		case <-c.readDeadline.wait():
		}
	}
}

// WriteTo sends one datagram to addr, a *net.UDPAddr.
func (c *udpConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	return c.WriteToTTL(b, addr, defaultTTL)
}

// WriteToTTL sends one datagram to addr with the given TTL (1 to 255), as
// a real socket does with an IP_TTL control message: a router it reaches
// with TTL 1 drops it rather than forward it.
func (c *udpConn) WriteToTTL(b []byte, addr net.Addr, ttl int) (int, error) {
	if ttl < 1 || ttl > 255 {
		return 0, c.opErr("write", fmt.Errorf("TTL %d is not in 1..255: %w", ttl, syscall.EINVAL))
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, c.opErr("write", fmt.Errorf("address %v is a %T, not a *net.UDPAddr: %w", addr, addr, syscall.EINVAL))
	}
	dst := ua.AddrPort()
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !dst.Addr().Is4() {
		return 0, c.opErr("write", fmt.Errorf("address %v is not IPv4; the simulator is IPv4 only: %w", addr, syscall.EAFNOSUPPORT))
	}
	if len(b) > maxUDPPayload {
		return 0, c.opErr("write", syscall.EMSGSIZE)
	}
	if c.writeDeadline.passed() {
		return 0, c.opErr("write", os.ErrDeadlineExceeded)
	}
	n := c.node.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return 0, c.opErr("write", net.ErrClosed)
	}
	c.node.transmit(&packet{
		proto: protoUDP,
		src:   netip.AddrPortFrom(c.node.addr, c.local.Port()),
		dst:   dst,
		ttl:   ttl,
		size:  len(b) + udpOverhead,
		data:  append([]byte(nil), b...),
	})
	return len(b), nil
}

// deliverUDP queues p on the socket bound to its port; callers hold net.mu.
func (nd *Node) deliverUDP(p *packet) {
	n := nd.net
	c := nd.udp[p.dst.Port()]
	switch {
	case c == nil:
		n.drop(p, nd.label, DropPortUnreachable)
	case c.queued+len(p.data) > c.readBuffer:
		n.drop(p, nd.label, DropSocketBuffer)
	default:
		c.queue = append(c.queue, datagram{from: p.src, data: p.data})
		c.queued += len(p.data)
		notify(c.readable)
		n.emit(EventDeliver, p, nd.label, NotDropped)
	}
}

// Close closes the socket; blocked reads return net.ErrClosed.
func (c *udpConn) Close() error {
	n := c.node.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	c.closeLocked()
	return nil
}

func (c *udpConn) closeLocked() {
	c.closed = true
	c.queue, c.queued = nil, 0
	delete(c.node.udp, c.local.Port())
	close(c.done)
}

// LocalAddr is the address the socket is bound to, a *net.UDPAddr: 0.0.0.0
// when bound to ":port", as with package net.
func (c *udpConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// SetReadBuffer sets how many payload bytes may wait in the socket before
// arriving datagrams are dropped. quic-go calls it (and asks for 7 MiB).
func (c *udpConn) SetReadBuffer(bytes int) error {
	if bytes <= 0 {
		return c.opErr("set", fmt.Errorf("read buffer of %d bytes: %w", bytes, syscall.EINVAL))
	}
	n := c.node.net
	n.mu.Lock()
	defer n.mu.Unlock()
	c.readBuffer = bytes
	return nil
}

// SetWriteBuffer is accepted and ignored: writes never block, and the link's
// queue is the only send buffer. quic-go calls it.
func (c *udpConn) SetWriteBuffer(int) error { return nil }
