package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/relay/relaywire"
	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"
)

// Relay link timers.
const (
	// tcpFallbackDelay is how long the QUIC dial to the relay has alone
	// before TLS over TCP is tried beside it (happy eyeballs, RFC 8305's
	// 250 ms doubled for QUIC's handshake): on a network that drops UDP
	// the QUIC dial never answers.
	tcpFallbackDelay = 500 * time.Millisecond
	// linkKeepAlive keeps the link's NAT mapping alive, well inside the
	// 30 s UDP mapping timeout most NATs use (RFC 4787 REQ-5's floor), so
	// lost keep-alives cost nothing. It also bounds how long a peer takes
	// to notice that the relay restarted: the new relay answers the next
	// keep-alive with a stateless reset. A packet every 5 s is nothing.
	linkKeepAlive = 5 * time.Second
	// linkIdleTimeout ends a link that hears nothing, keep-alives
	// included, for three keep-alive periods.
	linkIdleTimeout = 3 * linkKeepAlive
	// linkRetryMin and linkRetryMax bound the backoff between attempts
	// to reach the relay: quick after a relay restart, gentle during an
	// outage.
	linkRetryMin = 100 * time.Millisecond
	linkRetryMax = 10 * time.Second
)

// linkQUICConfig is the QUIC configuration of the relay link: signalling
// only; relayed packets bypass it.
var linkQUICConfig = &quic.Config{
	MaxIdleTimeout:        linkIdleTimeout,
	KeepAlivePeriod:       linkKeepAlive,
	HandshakeIdleTimeout:  linkIdleTimeout,
	MaxIncomingStreams:    -1,
	MaxIncomingUniStreams: -1,
}

// link is the peer's connection to the relay.
type link struct {
	transport string // "udp" or "tcp"
	ctrl      *relaywire.Stream
	quic      *quic.Conn // UDP links
	tcp       net.Conn   // TCP links
	nat       natInfo
}

func (l *link) close() {
	l.ctrl.Close()
	if l.quic != nil {
		l.quic.CloseWithError(0, "")
	}
}

// path is the relayed path this link gives.
func (l *link) path() Path {
	if l.transport == "tcp" {
		return PathRelayTCP
	}
	return PathRelayUDP
}

// linkManager keeps the peer's link to the relay while any session needs
// it, reconnecting after failures, and hands the relay's messages to the
// sessions.
type linkManager struct {
	p *peer

	mu      sync.Mutex
	cur     *link
	running bool
}

func newLinkManager(p *peer) *linkManager { return &linkManager{p: p} }

// want starts the link if it is not running.
func (m *linkManager) want() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running || m.p.ctx.Err() != nil {
		return
	}
	m.running = true
	m.p.wg.Go(m.run)
}

// idle drops the link if no session needs it, checked under the lock that
// hands the link out: a session added meanwhile keeps it.
func (m *linkManager) idle() {
	m.mu.Lock()
	l := m.cur
	if l == nil || m.p.sessionCount() > 0 {
		m.mu.Unlock()
		return
	}
	m.cur = nil
	m.mu.Unlock()
	m.p.log.Debug("dropping relay link", "why", "no session needs it")
	l.close()
}

// reconnect drops the current link; run makes a new one if sessions need
// it.
func (m *linkManager) reconnect(why string) {
	m.mu.Lock()
	l := m.cur
	m.cur = nil
	m.mu.Unlock()
	if l != nil {
		m.p.log.Debug("dropping relay link", "why", why)
		l.close()
	}
}

// stop drops the link for good; the peer is closing.
func (m *linkManager) stop() { m.reconnect("the peer is closing") }

func (m *linkManager) current() *link {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// send sends a message on the current link; false when there is none.
func (m *linkManager) send(msg *relayv1.PeerMessage) bool {
	l := m.current()
	return l != nil && l.ctrl.SendControl(msg) == nil
}

func (m *linkManager) run() {
	p := m.p
	backoff := linkRetryMin
	for {
		m.mu.Lock()
		if p.ctx.Err() != nil || p.sessionCount() == 0 {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		l, err := m.connect(p.ctx)
		if err != nil {
			p.log.Warn("cannot reach the relay", "udp", p.relay.UDP, "tcp", p.relay.TCP, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
			}
			backoff = min(2*backoff, linkRetryMax)
			continue
		}
		backoff = linkRetryMin
		p.log.Debug("relay link up", "transport", l.transport, "reflexive", l.nat.reflexive, "nat_varies", l.nat.varies)
		m.mu.Lock()
		m.cur = l
		m.mu.Unlock()
		for _, s := range p.sessions() {
			s.linkUp(l)
		}
		err = m.serve(l)
		m.mu.Lock()
		if m.cur == l {
			m.cur = nil
		}
		m.mu.Unlock()
		l.close()
		p.log.Debug("relay link down", "err", err)
		for _, s := range p.sessions() {
			s.linkDown()
		}
	}
}

type dialed struct {
	l   *link
	err error
}

// connect makes a link: QUIC first, TLS over TCP beside it after
// tcpFallbackDelay; the first up wins.
func (m *linkManager) connect(ctx context.Context) (*link, error) {
	p := m.p
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var main, second *net.UDPAddr
	if p.relay.UDP != "" {
		var err error
		if main, err = net.ResolveUDPAddr("udp", p.relay.UDP); err != nil {
			return nil, fmt.Errorf("relay UDP address %q: %w", p.relay.UDP, err)
		}
		p.relayUDP.Store(main)
		if p.relay.ProbeUDP != "" {
			if second, err = net.ResolveUDPAddr("udp", p.relay.ProbeUDP); err != nil {
				return nil, fmt.Errorf("relay probe address %q: %w", p.relay.ProbeUDP, err)
			}
		}
	}
	results := make(chan dialed, 2)
	pending := 0
	// Attempts still running when connect returns are closed if they
	// succeed after all.
	defer func() {
		if pending > 0 {
			late := pending
			p.wg.Go(func() {
				for range late {
					if r := <-results; r.l != nil {
						r.l.close()
					}
				}
			})
		}
	}()
	var tcpStart <-chan time.Time
	if main != nil {
		pending++
		p.wg.Go(func() { p.probes.run(ctx, p, main, second) })
		p.wg.Go(func() {
			l, err := m.dialQUIC(ctx, main)
			results <- dialed{l, err}
		})
	}
	if p.relay.TCP != "" {
		wait := tcpFallbackDelay
		if main == nil {
			wait = 0
		}
		tcpStart = time.After(wait)
	}
	var errs []error
	for pending > 0 || tcpStart != nil {
		select {
		case <-tcpStart:
			tcpStart = nil
			pending++
			p.wg.Go(func() {
				l, err := m.dialTCP(ctx)
				results <- dialed{l, err}
			})
		case r := <-results:
			pending--
			if r.err != nil {
				errs = append(errs, r.err)
				if tcpStart != nil && pending == 0 {
					tcpStart = time.After(0) // UDP failed outright: no need to wait
				}
				continue
			}
			if r.l.transport == "udp" {
				r.l.nat = p.probes.result(ctx, probeGrace)
			}
			return r.l, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, errors.Join(errs...)
}

// linkTLS is the TLS configuration for the relay link.
func (p *peer) linkTLS() *tls.Config {
	t := p.relay.TLS.Clone()
	t.Certificates = []tls.Certificate{p.cert}
	t.NextProtos = []string{relaywire.ALPN}
	t.MinVersion = tls.VersionTLS13
	return t
}

func (m *linkManager) dialQUIC(ctx context.Context, addr *net.UDPAddr) (*link, error) {
	qc, err := m.p.tr.Dial(ctx, addr, m.p.linkTLS(), linkQUICConfig)
	if err != nil {
		return nil, fmt.Errorf("QUIC to relay %s: %w", addr, err)
	}
	str, err := qc.OpenStream()
	if err != nil {
		qc.CloseWithError(0, "")
		return nil, fmt.Errorf("QUIC to relay %s: open control stream: %w", addr, err)
	}
	return &link{transport: "udp", ctrl: relaywire.NewStream(controlStream{str}), quic: qc}, nil
}

func (m *linkManager) dialTCP(ctx context.Context) (*link, error) {
	p := m.p
	dial := p.net.DialTCP
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	c, err := dial(ctx, p.relay.TCP)
	if err != nil {
		return nil, fmt.Errorf("TCP to relay %s: %w", p.relay.TCP, err)
	}
	tc := tls.Client(c, p.linkTLS())
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS to relay %s: %w", p.relay.TCP, err)
	}
	return &link{transport: "tcp", ctrl: relaywire.NewStream(tc), tcp: tc}, nil
}

// serve reads the link until it fails, passing messages to sessions and,
// on a TCP link, relayed packets to the TCP path.
func (m *linkManager) serve(l *link) error {
	if l.tcp != nil {
		stop := make(chan struct{})
		defer close(stop)
		m.p.wg.Go(func() {
			t := time.NewTicker(linkKeepAlive)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					l.ctrl.SendPing()
				case <-stop:
					return
				}
			}
		})
	}
	for {
		if l.tcp != nil {
			l.tcp.SetReadDeadline(time.Now().Add(linkIdleTimeout))
		}
		k, b, err := l.ctrl.Read()
		if err != nil {
			return err
		}
		switch k {
		case relaywire.FrameControl:
			var msg relayv1.RelayMessage
			if err := proto.Unmarshal(b, &msg); err != nil {
				return fmt.Errorf("malformed message from the relay: %w", err)
			}
			m.dispatch(l, &msg)
		case relaywire.FrameData:
			m.p.tcp.deliver(b)
		case relaywire.FramePing:
			l.ctrl.SendPong()
		}
	}
}

// dispatch hands a relay message to its session.
func (m *linkManager) dispatch(l *link, msg *relayv1.RelayMessage) {
	var ref uint32
	switch x := msg.GetMsg().(type) {
	case *relayv1.RelayMessage_Joined:
		ref = x.Joined.GetRef()
	case *relayv1.RelayMessage_Paired:
		ref = x.Paired.GetRef()
	case *relayv1.RelayMessage_Punch:
		ref = x.Punch.GetRef()
	case *relayv1.RelayMessage_PeerLeft:
		ref = x.PeerLeft.GetRef()
	case *relayv1.RelayMessage_Refused:
		ref = x.Refused.GetRef()
	case *relayv1.RelayMessage_Ended:
		ref = x.Ended.GetRef()
	default:
		return
	}
	if s := m.p.session(ref); s != nil {
		s.fromRelay(l, msg)
	}
}

// controlStream closes a QUIC stream both ways, so a blocked read or write
// on it ends.
type controlStream struct{ *quic.Stream }

func (s controlStream) Close() error {
	s.CancelRead(0)
	return s.Stream.Close()
}
