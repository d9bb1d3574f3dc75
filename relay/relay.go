package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/identity"
	"github.com/jumpmesh/jumpmesh/mesh/udpmux"
	"github.com/jumpmesh/jumpmesh/relay/relaywire"
	"github.com/quic-go/quic-go"
)

// Link timers.
const (
	// linkIdleTimeout closes a link that is in no session: peers connect
	// for their sessions, so a link without one is a leftover or a
	// squatter holding one of MaxLinks.
	linkIdleTimeout = time.Minute
	// linkHandshakeTimeout bounds a TLS over TCP handshake and the wait
	// for a QUIC link's control stream.
	linkHandshakeTimeout = 10 * time.Second
	// tcpLinkTimeout closes a TCP link that sent nothing, not even a
	// ping (peers ping every 5 s), for this long.
	tcpLinkTimeout = 45 * time.Second
	// quicIdleTimeout ends a silent QUIC link; peers send keep-alives
	// every 5 s and ask for less.
	quicIdleTimeout = 30 * time.Second
)

// Relay pairs the two sides of mesh sessions, times their hole punching
// and forwards their end-to-end encrypted packets when no direct path
// opens. Serve it on UDP (ServeUDP) and, for networks that block UDP, on
// TCP (ServeTCP).
type Relay struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	tls *tls.Config

	channels sync.Map // channel id -> *channel: read on every relayed packet

	mu       sync.Mutex
	sessions map[sessionKey]*session
	peers    map[peerKey]*usage
	links    map[*link]struct{}
	udp      udpmux.Conn // the socket ServeUDP serves, for data arriving on TCP
}

// New returns a relay.
func New(cfg Config) (*Relay, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	t := cfg.TLS.Clone()
	t.NextProtos = []string{relaywire.ALPN}
	t.MinVersion = tls.VersionTLS13
	// Any certificate: a peer is its key, which a client's session token
	// names and an exporter's does not need.
	t.ClientAuth = tls.RequireAnyClientCert
	t.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := identity.PeerKey(cs)
		return err
	}
	return &Relay{
		cfg:      cfg,
		log:      cfg.Logger,
		m:        m,
		tls:      t,
		sessions: map[sessionKey]*session{},
		peers:    map[peerKey]*usage{},
		links:    map[*link]struct{}{},
	}, nil
}

// linkQUICConfig is the QUIC configuration of relay links: signalling
// only, so small windows; relayed packets bypass QUIC.
var linkQUICConfig = &quic.Config{
	MaxIdleTimeout:        quicIdleTimeout,
	MaxIncomingStreams:    1,
	MaxIncomingUniStreams: -1,
	HandshakeIdleTimeout:  linkHandshakeTimeout,
}

// ServeUDP serves QUIC links, relayed packets and address probes on main,
// and address probes on second (another port, so that a peer can tell from
// two answers whether its NAT maps it to one port for all destinations).
// It returns when ctx ends, having closed every link it served; it does not
// close the sockets.
func (r *Relay) ServeUDP(ctx context.Context, main, second net.PacketConn) error {
	mux := udpmux.New(main, (*dataPlane)(r))
	r.mu.Lock()
	if r.udp != nil {
		r.mu.Unlock()
		return errors.New("relay: already serving UDP")
	}
	r.udp = mux
	r.mu.Unlock()
	tr := &quic.Transport{Conn: mux, StatelessResetKey: r.cfg.StatelessResetKey}
	ln, err := tr.Listen(r.tls, linkQUICConfig)
	if err != nil {
		return fmt.Errorf("relay: listen on UDP %s: %w", main.LocalAddr(), err)
	}
	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		tr.Close() // closes every link's connection
		second.SetReadDeadline(time.Now())
		wg.Wait()
		r.mu.Lock()
		r.udp = nil
		r.mu.Unlock()
	}()
	wg.Go(func() { r.answerProbes(ctx, second) })
	r.log.Info("relay serving UDP", "addr", main.LocalAddr(), "probe_addr", second.LocalAddr())
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: accept QUIC link: %w", err)
		}
		wg.Go(func() { r.serveQUIC(ctx, conn) })
	}
}

// answerProbes answers address probes on the second port.
func (r *Relay) answerProbes(ctx context.Context, pc net.PacketConn) {
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		if reply, ok := r.probeReply(buf[:n], ua); ok {
			pc.WriteTo(reply, from)
		}
	}
}

// ServeTCP serves TLS over TCP links on ln, for peers whose networks block
// UDP. It returns when ctx ends, having closed ln and every link it served.
func (r *Relay) ServeTCP(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer func() {
		stop()
		ln.Close()
		wg.Wait()
	}()
	r.log.Info("relay serving TCP", "addr", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: accept TCP link: %w", err)
		}
		wg.Go(func() { r.serveTCP(ctx, c) })
	}
}

func (r *Relay) serveQUIC(ctx context.Context, conn *quic.Conn) {
	key, err := identity.PeerKey(conn.ConnectionState().TLS)
	if err != nil {
		conn.CloseWithError(0, err.Error())
		return
	}
	actx, cancel := context.WithTimeout(ctx, linkHandshakeTimeout)
	str, err := conn.AcceptStream(actx)
	cancel()
	if err != nil {
		conn.CloseWithError(0, "no control stream")
		return
	}
	l := r.newLink("udp", relaywire.NewStream(controlStream{str}), key)
	if l == nil {
		conn.CloseWithError(0, "the relay has too many peers; try again later")
		return
	}
	l.quic = conn
	l.observed = conn.RemoteAddr().(*net.UDPAddr)
	stop := context.AfterFunc(ctx, func() { conn.CloseWithError(0, "relay shutting down") })
	defer stop()
	l.run(nil)
	conn.CloseWithError(0, "")
}

func (r *Relay) serveTCP(ctx context.Context, c net.Conn) {
	defer c.Close()
	tc := tls.Server(c, r.tls)
	hctx, cancel := context.WithTimeout(ctx, linkHandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		r.log.Debug("relay TCP handshake failed", "remote", c.RemoteAddr(), "err", err)
		return
	}
	key, err := identity.PeerKey(tc.ConnectionState())
	if err != nil {
		return
	}
	l := r.newLink("tcp", relaywire.NewStream(tc), key)
	if l == nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	l.run(tc)
}

// controlStream closes a QUIC stream both ways, so a blocked read or write
// on it ends.
type controlStream struct{ *quic.Stream }

func (s controlStream) Close() error {
	s.CancelRead(0)
	return s.Stream.Close()
}
