package netsim

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// The simulated TCP is a reliable byte stream over the simulated IP: its
// segments cross the same links, routers, NATs and firewalls as UDP, take
// their latency and bandwidth, and are never lost, tail-dropped or checked
// against an MTU, so it needs no retransmission. It models the three-way
// handshake (Dial returns after one round trip, Accept after one and a half),
// RST for a closed port (ECONNREFUSED) or for data to a closed connection
// (ECONNRESET), half-close with FIN, and flow control: a sender keeps at most
// tcpWindow bytes that the receiving application has not read. It has no
// congestion control, slow start, Nagle, delayed ACKs, simultaneous open or
// TIME_WAIT.

// tcpWindow is how many bytes a sender may have sent that the peer's
// application has not read yet: about the receive window Linux autotunes to
// on a fast path, enough for 80 Mbit/s at 100 ms RTT.
const tcpWindow = 1 << 20

// acceptBacklog bounds connections waiting for Accept; tests need far fewer
// than Linux's somaxconn of 4096.
const acceptBacklog = 128

// synTimeout is how long Linux retries a SYN before failing with ETIMEDOUT
// (net.ipv4.tcp_syn_retries = 6: 1+2+4+8+16+32+64 s).
const synTimeout = 127 * time.Second

type segKind uint8

const (
	segSYN segKind = iota
	segSYNACK
	// segACK completes the handshake and reports how many bytes the
	// receiving application has read, which opens the sender's window.
	segACK
	segData
	segFIN
	segRST
)

type segment struct {
	kind segKind
	data []byte
	read int64 // segACK: bytes the sender of the ACK has read so far
}

// tcpKey names a connection on its host: local port and remote endpoint.
type tcpKey struct {
	local  uint16
	remote netip.AddrPort
}

type tcpState uint8

const (
	stateSynSent tcpState = iota
	stateSynReceived
	stateEstablished
)

// tcpConn is one end of a simulated TCP connection.
type tcpConn struct {
	node    *Node
	network string
	key     tcpKey
	dialed  bool // holds its local port in node.tcpPorts

	deadlines
	// readLock and writeLock let one Read and one Write run at a time;
	// they are channels so that a waiting goroutine is durably blocked
	// under testing/synctest.
	readLock, writeLock chan struct{}
	readable, writable  chan struct{}
	established         chan struct{} // Dial: closed when the handshake ends, either way
	done                chan struct{} // closed by Close or the network's Close

	// Guarded by node.net.mu.
	state       tcpState
	listener    *tcpListener // a server connection until it is accepted
	dialErr     error
	recv        []byte
	read        int64 // bytes the application has read
	finReceived bool
	sent, acked int64 // bytes sent; bytes the peer's application has read
	finSent     bool
	resetErr    error
	closed      bool
}

var _ net.Conn = (*tcpConn)(nil)

func newTCPConn(nd *Node, network string, key tcpKey, state tcpState) *tcpConn {
	return &tcpConn{
		node:        nd,
		network:     network,
		key:         key,
		state:       state,
		readLock:    make(chan struct{}, 1),
		writeLock:   make(chan struct{}, 1),
		readable:    make(chan struct{}, 1),
		writable:    make(chan struct{}, 1),
		established: make(chan struct{}),
		done:        make(chan struct{}),
	}
}

// Dial opens a TCP connection to address ("ip:port"), like
// net.Dialer.DialContext. network is "tcp" or "tcp4". It fails with
// ECONNREFUSED when nothing listens there, and with the context's error, or
// ETIMEDOUT after 127 s, when the SYN is dropped on the way.
func (nd *Node) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if err := checkNetwork(network, protoTCP); err != nil {
		return nil, err
	}
	raddr, err := parseDial(network, address)
	if err != nil {
		return nil, err
	}
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(raddr), Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, opErr(err)
	}
	n := nd.net
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, opErr(net.ErrClosed)
	}
	port, ok := nd.ephemeral(func(p uint16) bool { return nd.tcpPorts[p] > 0 })
	if !ok {
		n.mu.Unlock()
		return nil, opErr(syscall.EADDRNOTAVAIL)
	}
	c := newTCPConn(nd, network, tcpKey{local: port, remote: raddr}, stateSynSent)
	c.dialed = true
	nd.tcpPorts[port]++
	nd.conns[c.key] = c
	c.sendSeg(&segment{kind: segSYN})
	n.mu.Unlock()

	giveUp := time.NewTimer(synTimeout)
	defer giveUp.Stop()
	var fail error
	select {
	case <-c.established:
		n.mu.Lock()
		defer n.mu.Unlock()
		if c.dialErr != nil {
			return nil, opErr(c.dialErr)
		}
		return c, nil
	case <-c.done:
		return nil, opErr(net.ErrClosed)
	case <-ctx.Done():
		fail = ctx.Err()
	case <-giveUp.C:
		fail = syscall.ETIMEDOUT
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !c.closed {
		if c.state == stateEstablished {
			c.sendSeg(&segment{kind: segRST})
		}
		c.closeLocked()
	}
	return nil, opErr(fail)
}

// Listen opens a TCP listener, like net.Listen. network is "tcp" or "tcp4";
// address is ":port", "ip:port" or ":0".
func (nd *Node) Listen(network, address string) (net.Listener, error) {
	if err := checkNetwork(network, protoTCP); err != nil {
		return nil, err
	}
	bind, err := nd.parseBind(network, address)
	if err != nil {
		return nil, err
	}
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	opErr := func(err error) error {
		return &net.OpError{Op: "listen", Net: network, Addr: net.TCPAddrFromAddrPort(bind), Err: err}
	}
	if n.closed {
		return nil, opErr(net.ErrClosed)
	}
	port := bind.Port()
	if port == 0 {
		var ok bool
		if port, ok = nd.ephemeral(func(p uint16) bool { return nd.tcpPorts[p] > 0 }); !ok {
			return nil, opErr(syscall.EADDRINUSE)
		}
	} else if nd.tcpPorts[port] > 0 {
		return nil, opErr(fmt.Errorf("host %s: %w", nd.name, syscall.EADDRINUSE))
	}
	l := &tcpListener{
		node:       nd,
		network:    network,
		local:      netip.AddrPortFrom(bind.Addr(), port),
		acceptable: make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	nd.listeners[port] = l
	nd.tcpPorts[port]++
	return l, nil
}

// tcpListener is a Node's TCP listener.
type tcpListener struct {
	node       *Node
	network    string
	local      netip.AddrPort
	acceptable chan struct{}
	done       chan struct{}

	// Guarded by node.net.mu.
	queue       []*tcpConn // handshake done, waiting for Accept
	handshaking int
	closed      bool
}

var _ net.Listener = (*tcpListener)(nil)

// Accept waits for the next connection whose handshake is complete.
func (l *tcpListener) Accept() (net.Conn, error) {
	n := l.node.net
	for {
		n.mu.Lock()
		if l.closed {
			n.mu.Unlock()
			return nil, &net.OpError{Op: "accept", Net: l.network, Addr: l.Addr(), Err: net.ErrClosed}
		}
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue = l.queue[1:]
			if len(l.queue) > 0 {
				notify(l.acceptable) // for another Accept
			}
			n.mu.Unlock()
			return c, nil
		}
		n.mu.Unlock()
		select {
		case <-l.acceptable:
		case <-l.done:
		}
	}
}

// Close stops listening; connections not yet accepted are reset, accepted
// ones stay open.
func (l *tcpListener) Close() error {
	n := l.node.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if l.closed {
		return &net.OpError{Op: "close", Net: l.network, Addr: l.Addr(), Err: net.ErrClosed}
	}
	l.closeLocked()
	return nil
}

func (l *tcpListener) closeLocked() {
	l.closed = true
	for _, c := range l.queue {
		c.sendSeg(&segment{kind: segRST})
		c.closeLocked()
	}
	l.queue = nil
	delete(l.node.listeners, l.local.Port())
	l.node.releaseTCPPort(l.local.Port())
	close(l.done)
}

// Addr is the bound address, a *net.TCPAddr (0.0.0.0 when bound to ":port").
func (l *tcpListener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.local) }

func (nd *Node) releaseTCPPort(port uint16) {
	if nd.tcpPorts[port]--; nd.tcpPorts[port] <= 0 {
		delete(nd.tcpPorts, port)
	}
}

// deliverTCP hands a segment to its connection or listener; callers hold
// net.mu.
func (nd *Node) deliverTCP(p *packet) {
	n := nd.net
	key := tcpKey{local: p.dst.Port(), remote: p.src}
	c := nd.conns[key]
	if c == nil {
		if p.seg.kind == segSYN {
			nd.acceptSYN(p, key)
			return
		}
		n.drop(p, nd.label, DropPortUnreachable)
		// Pure ACKs and FINs to a closed connection are let go, as a
		// socket in TIME_WAIT would.
		if p.seg.kind == segData || p.seg.kind == segSYNACK {
			nd.replyRST(p)
		}
		return
	}
	n.emit(EventDeliver, p, nd.label, NotDropped)
	c.input(p.seg)
}

func (nd *Node) acceptSYN(p *packet, key tcpKey) {
	n := nd.net
	l := nd.listeners[key.local]
	switch {
	case l == nil:
		n.drop(p, nd.label, DropPortUnreachable)
		nd.replyRST(p)
	case len(l.queue)+l.handshaking >= acceptBacklog:
		n.drop(p, nd.label, DropBacklogFull)
	default:
		n.emit(EventDeliver, p, nd.label, NotDropped)
		c := newTCPConn(nd, l.network, key, stateSynReceived)
		c.listener = l
		l.handshaking++
		nd.conns[key] = c
		c.sendSeg(&segment{kind: segSYNACK})
	}
}

func (nd *Node) replyRST(p *packet) {
	nd.transmit(&packet{proto: protoTCP, src: p.dst, dst: p.src, size: tcpOverhead, seg: &segment{kind: segRST}})
}

// input handles a segment for c; callers hold net.mu.
func (c *tcpConn) input(s *segment) {
	switch s.kind {
	case segSYN:
		return // a repeated SYN; the SYN-ACK is on its way
	case segRST:
		if c.state == stateSynSent {
			c.dialErr = syscall.ECONNREFUSED
			c.unregister()
			close(c.established)
			return
		}
		c.resetErr = syscall.ECONNRESET
		c.unregister()
		notify(c.readable)
		notify(c.writable)
		return
	case segSYNACK:
		if c.state == stateSynSent {
			c.state = stateEstablished
			c.sendSeg(&segment{kind: segACK})
			close(c.established)
		}
		return
	}
	if c.state == stateSynReceived {
		l := c.listener
		c.state = stateEstablished
		c.listener = nil
		l.handshaking--
		if l.closed {
			c.sendSeg(&segment{kind: segRST})
			c.unregister()
			return
		}
		l.queue = append(l.queue, c)
		notify(l.acceptable)
	}
	switch s.kind {
	case segACK:
		if s.read > c.acked {
			c.acked = s.read
			notify(c.writable)
		}
	case segData:
		c.recv = append(c.recv, s.data...)
		notify(c.readable)
	case segFIN:
		c.finReceived = true
		notify(c.readable)
	}
}

// sendSeg sends a segment of c; callers hold net.mu.
func (c *tcpConn) sendSeg(s *segment) {
	c.node.transmit(&packet{
		proto: protoTCP,
		src:   netip.AddrPortFrom(c.node.addr, c.key.local),
		dst:   c.key.remote,
		size:  tcpOverhead + len(s.data),
		seg:   s,
	})
}

// unregister forgets c on its host, so later segments for it are answered
// as for a closed port; callers hold net.mu.
func (c *tcpConn) unregister() {
	nd := c.node
	if nd.conns[c.key] != c {
		return
	}
	delete(nd.conns, c.key)
	if c.listener != nil {
		c.listener.handshaking--
		c.listener = nil
	}
	if c.dialed {
		nd.releaseTCPPort(c.key.local)
	}
}

func (c *tcpConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// acquire takes lock (readLock or writeLock) unless the conn closes or the
// deadline passes first.
func (c *tcpConn) acquire(lock chan struct{}, d *deadline) error {
	select {
	case lock <- struct{}{}:
		return nil
	case <-c.done:
		return net.ErrClosed
	case <-d.wait():
		return os.ErrDeadlineExceeded
	}
}

// Read reads what has arrived, waiting for at least one byte; it returns
// io.EOF once the peer's FIN has been read up to.
func (c *tcpConn) Read(b []byte) (int, error) {
	if err := c.acquire(c.readLock, &c.readDeadline); err != nil {
		return 0, c.opErr("read", err)
	}
	defer func() { <-c.readLock }()
	n := c.node.net
	for {
		if c.readDeadline.passed() {
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		n.mu.Lock()
		switch {
		case c.closed:
			n.mu.Unlock()
			return 0, c.opErr("read", net.ErrClosed)
		case c.resetErr != nil:
			n.mu.Unlock()
			return 0, c.opErr("read", c.resetErr)
		case len(b) == 0:
			n.mu.Unlock()
			return 0, nil
		case len(c.recv) > 0:
			k := copy(b, c.recv)
			c.recv = c.recv[k:]
			c.read += int64(k)
			c.sendSeg(&segment{kind: segACK, read: c.read})
			n.mu.Unlock()
			return k, nil
		case c.finReceived:
			n.mu.Unlock()
			return 0, io.EOF
		}
		n.mu.Unlock()
		select {
		case <-c.readable:
		case <-c.done:
		case <-c.readDeadline.wait():
		}
	}
}

// Write sends all of b, waiting while the peer's window is full.
func (c *tcpConn) Write(b []byte) (int, error) {
	if err := c.acquire(c.writeLock, &c.writeDeadline); err != nil {
		return 0, c.opErr("write", err)
	}
	defer func() { <-c.writeLock }()
	n := c.node.net
	written := 0
	for {
		if c.writeDeadline.passed() {
			return written, c.opErr("write", os.ErrDeadlineExceeded)
		}
		n.mu.Lock()
		if err := c.writeErr(); err != nil {
			n.mu.Unlock()
			return written, c.opErr("write", err)
		}
		for len(b) > 0 && c.sent-c.acked < tcpWindow {
			k := min(len(b), c.node.mss, int(tcpWindow-(c.sent-c.acked)))
			c.sendSeg(&segment{kind: segData, data: append([]byte(nil), b[:k]...)})
			c.sent += int64(k)
			b = b[k:]
			written += k
		}
		n.mu.Unlock()
		if len(b) == 0 {
			return written, nil
		}
		select {
		case <-c.writable:
		case <-c.done:
		case <-c.writeDeadline.wait():
		}
	}
}

// writeErr says why c cannot send; callers hold net.mu.
func (c *tcpConn) writeErr() error {
	switch {
	case c.closed:
		return net.ErrClosed
	case c.resetErr != nil:
		return c.resetErr
	case c.finSent:
		return syscall.EPIPE
	}
	return nil
}

// CloseWrite sends FIN after everything written so far: the peer reads
// io.EOF, and can still send. Like (*net.TCPConn).CloseWrite.
func (c *tcpConn) CloseWrite() error {
	select {
	case c.writeLock <- struct{}{}:
	case <-c.done:
		return c.opErr("close", net.ErrClosed)
	}
	defer func() { <-c.writeLock }()
	n := c.node.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.finSent && !c.closed {
		return nil
	}
	if err := c.writeErr(); err != nil {
		return c.opErr("close", err)
	}
	c.finSent = true
	c.sendSeg(&segment{kind: segFIN})
	return nil
}

// Close closes the connection: FIN if everything received was read, RST if
// not (as Linux does); blocked calls return net.ErrClosed.
func (c *tcpConn) Close() error {
	n := c.node.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	if c.resetErr == nil {
		switch {
		case len(c.recv) > 0:
			c.sendSeg(&segment{kind: segRST})
		case !c.finSent:
			c.sendSeg(&segment{kind: segFIN})
		}
	}
	c.closeLocked()
	return nil
}

func (c *tcpConn) closeLocked() {
	c.closed = true
	c.recv = nil
	c.unregister()
	close(c.done)
}

// LocalAddr is a *net.TCPAddr with the host's address.
func (c *tcpConn) LocalAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.node.addr, c.key.local))
}

// RemoteAddr is a *net.TCPAddr: the peer as this host sees it, after NAT.
func (c *tcpConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.key.remote) }
