package mesh

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net/netip"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/mesh/meshwire"
	"github.com/quic-go/quic-go"
)

// Listener is an exporter's side of the mesh: one UDP socket and relay
// link for all its sessions. The coordinator tells the exporter of each
// session (its token) and the exporter joins it; the client then connects,
// through the relay or directly.
type Listener struct {
	p   *peer
	cfg ListenConfig

	mu       sync.Mutex
	sessions map[string]*exporterSession // by TLS server name
	closed   bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Listen opens an exporter's side of the mesh. It reaches the relay when
// the first session is joined.
func Listen(cfg ListenConfig) (*Listener, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	p, err := newPeer(relayv1.Role_ROLE_EXPORTER, cfg.Key, cfg.Relay, cfg.Network, cfg.Logger)
	if err != nil {
		return nil, err
	}
	l := &Listener{p: p, cfg: cfg, sessions: map[string]*exporterSession{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	tlsConf := p.serverTLS(l.clientKey)
	for tr, relayed := range map[*quic.Transport]Path{p.tr: PathRelayUDP, p.tcp.transport(): PathRelayTCP} {
		ln, err := tr.Listen(tlsConf, e2eConfig(true))
		if err != nil {
			l.cancel()
			l.wg.Wait()
			p.close()
			return nil, fmt.Errorf("mesh: listen: %w", err)
		}
		l.wg.Go(func() { l.accept(ln, relayed) })
	}
	return l, nil
}

// clientKey returns the key thumbprint the session of a TLS server name
// expects of its client.
func (l *Listener) clientKey(serverName string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	es := l.sessions[serverName]
	if es == nil {
		return "", false
	}
	return es.s.id.jkt, true
}

// accept takes the connections of one transport, whose relayed path is
// relayed.
func (l *Listener) accept(ln *quic.Listener, relayed Path) {
	defer ln.Close()
	stop := context.AfterFunc(l.ctx, func() { ln.Close() })
	defer stop()
	for {
		qc, err := ln.Accept(l.ctx)
		if err != nil {
			return
		}
		l.mu.Lock()
		es := l.sessions[qc.ConnectionState().TLS.ServerName]
		l.mu.Unlock()
		if es == nil {
			qc.CloseWithError(codeSessionEnded, "the session is over")
			continue
		}
		es.loop.post(func() { es.add(qc, relayed) })
	}
}

// Join joins the session of a token the coordinator handed the exporter,
// and returns once the relay has accepted it. The session's Conn serves
// the client's streams until the session ends: its token expires (unless
// the client renews it), or Close. Joining a session that is already
// joined takes the token as a renewal and returns the same Conn.
func (l *Listener) Join(ctx context.Context, tok string) (*Conn, error) {
	claims, err := l.cfg.Tokens.Verify(tok, token.Session, token.ExporterAudience(l.cfg.Name), time.Now())
	if err != nil {
		return nil, fmt.Errorf("mesh: join session: %w", err)
	}
	if claims.Exporter != l.cfg.Name || claims.Cnf == nil || claims.Cnf.JKT == "" {
		return nil, fmt.Errorf("mesh: join session: the token is not a session token for exporter %s bound to a client key", l.cfg.Name)
	}
	name := idOf(claims).serverName()
	var es *exporterSession
	for es == nil {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, errors.New("mesh: join session: the listener is closed")
		}
		if cur := l.sessions[name]; cur != nil {
			l.mu.Unlock()
			if cur.renew(tok) {
				return cur.conn, nil
			}
			continue // it ended meanwhile: this token starts it anew
		}
		es = l.newSession(claims, tok)
		l.sessions[name] = es
		l.mu.Unlock()
	}
	es.loop.post(es.s.start)
	select {
	case <-es.joined:
		return es.conn, nil
	case <-es.conn.Done():
		return nil, es.conn.Err()
	case <-ctx.Done():
		es.conn.Close()
		return nil, fmt.Errorf("mesh: join session: %w", ctx.Err())
	}
}

// Close ends every session and closes the socket. Clients take it for a
// restart: they reconnect when the exporter joins their sessions again.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	sessions := make([]*exporterSession, 0, len(l.sessions))
	for _, es := range l.sessions {
		sessions = append(sessions, es)
	}
	l.mu.Unlock()
	for _, es := range sessions {
		es.loop.post(func() { es.finish(ErrSessionClosed, codePeerRestarted, "the exporter is stopping") })
		<-es.conn.gone
	}
	l.cancel()
	l.wg.Wait()
	l.p.close()
	return nil
}

// exporterSession is an exporter's session: its state lives on its loop.
type exporterSession struct {
	l      *Listener
	s      *session
	name   string
	conn   *Conn
	loop   *loop
	ctx    context.Context
	end    context.CancelFunc
	joined chan struct{}
	wg     sync.WaitGroup

	// Loop state.
	conns    map[*quic.Conn]Path // the client's connections, and the path they have when relayed
	deadline time.Time
	expiry   *time.Timer
	link     *link
	cands    targets
	ended    bool
}

func (l *Listener) newSession(claims *token.Claims, tok string) *exporterSession {
	es := &exporterSession{
		l:        l,
		loop:     newLoop(),
		joined:   make(chan struct{}),
		conns:    map[*quic.Conn]Path{},
		deadline: claims.ExpiresAt.Time,
	}
	es.ctx, es.end = context.WithCancel(context.Background())
	es.s = newSession(l.p, idOf(claims), tok)
	es.s.ctl = es
	es.name = es.s.id.serverName()
	es.conn = newConn(func() {
		es.loop.post(func() { es.finish(ErrSessionClosed, codeSessionEnded, "the exporter ended the session") })
	})
	es.conn.followRemote = true
	es.conn.accepted = make(chan *quic.Stream)
	es.wg.Go(func() { es.loop.run(es.ctx) })
	es.loop.post(func() { es.expiry = time.AfterFunc(time.Until(es.deadline), func() { es.loop.post(es.expire) }) })
	return es
}

func (es *exporterSession) relayJoined(*relayv1.Joined) {
	es.loop.post(func() {
		select {
		case <-es.joined:
		default:
			close(es.joined)
		}
	})
}

func (es *exporterSession) relayPaired(m *relayv1.Paired, l *link) {
	es.loop.post(func() {
		if es.ended {
			return
		}
		es.link, es.cands = l, punchTargets(l, m)
		if !es.cands.empty() {
			es.s.punch.start(es.cands)
		}
	})
}

func (es *exporterSession) relayPunch(l *link) {
	es.loop.post(func() {
		if !es.ended && es.link == l && !es.cands.empty() {
			es.s.punch.start(es.cands)
		}
	})
}

func (es *exporterSession) relayPeerLeft(reason string) {
	es.loop.post(func() { es.l.p.log.Debug("the client left the relay", "reason", reason) })
}

func (es *exporterSession) relayRefused(m *relayv1.Refused) {
	es.loop.post(func() {
		if m.GetRefresh() {
			return
		}
		es.finish(&RefusedError{Reason: m.GetReason(), Message: m.GetMessage()}, codeSessionEnded, m.GetMessage())
	})
}

func (es *exporterSession) relayEnded(msg string) {
	es.loop.post(func() { es.finish(&SessionError{Err: ErrSessionExpired, Message: msg}, codeSessionExpired, msg) })
}

// pong: the exporter punches and answers, the client decides.
func (es *exporterSession) pong(netip.AddrPort, time.Duration) {}

func (es *exporterSession) linkDown() {}

// add takes a connection of the session's client, which came in on the
// transport of relayed.
func (es *exporterSession) add(qc *quic.Conn, relayed Path) {
	if es.ended {
		qc.CloseWithError(codeSessionEnded, "the session is over")
		return
	}
	es.conns[qc] = relayed
	if cur, _ := es.conn.state(); cur == nil {
		es.conn.set(qc, relayed)
	}
	es.wg.Go(func() { es.serve(qc) })
}

// serve hands a connection's streams to Conn.AcceptStream and reads its
// control stream, until the connection ends. The connection a stream or a
// control message last came on is the one the client uses: it becomes
// the session's for Path and RTT.
func (es *exporterSession) serve(qc *quic.Conn) {
	es.wg.Go(func() { es.readControl(qc) })
	for {
		s, err := qc.AcceptStream(es.ctx)
		if err != nil {
			break
		}
		es.used(qc)
		select {
		case es.conn.accepted <- s:
		case <-es.ctx.Done():
			s.CancelRead(0)
			s.CancelWrite(0)
		}
	}
	select {
	case <-qc.Context().Done():
	case <-es.ctx.Done():
	}
	es.loop.post(func() { es.gone(qc) })
}

func (es *exporterSession) readControl(qc *quic.Conn) {
	rs, err := qc.AcceptUniStream(es.ctx)
	if err != nil {
		return
	}
	r := bufio.NewReader(rs)
	for {
		m, err := meshwire.ReadControl(r)
		if err != nil {
			return
		}
		es.used(qc)
		if tok := m.GetRefresh().GetToken(); tok != "" {
			es.loop.post(func() { es.refresh(tok) })
		}
	}
}

// used makes qc, which carried something from the client, the session's
// connection. It runs for every stream: only a change goes to the loop.
func (es *exporterSession) used(qc *quic.Conn) {
	if cur, _ := es.conn.state(); cur == qc {
		return
	}
	es.loop.post(func() {
		if path, ok := es.conns[qc]; ok {
			es.conn.set(qc, path)
		}
	})
}

// gone forgets a connection that ended. When the client closed it and it
// has no other, the session is over: its client is done with it.
func (es *exporterSession) gone(qc *quic.Conn) {
	delete(es.conns, qc)
	if cur, _ := es.conn.state(); cur == qc {
		next, path := (*quic.Conn)(nil), PathNone
		for c, p := range es.conns {
			next, path = c, p
		}
		es.conn.set(next, path)
	}
	var ae *quic.ApplicationError
	if len(es.conns) == 0 && errors.As(context.Cause(qc.Context()), &ae) && ae.Remote && ae.ErrorCode == codeClosed {
		es.finish(&SessionError{Err: ErrSessionEnded, Message: "the client closed it"}, codeSessionEnded, "the client closed the session")
	}
}

// renew hands the session a token of its own from the coordinator, and
// reports whether the session still lives to take it.
func (es *exporterSession) renew(tok string) bool {
	alive := make(chan bool, 1)
	es.loop.post(func() { alive <- es.refresh(tok) })
	select {
	case ok := <-alive:
		return ok
	case <-es.conn.Done():
		return false
	}
}

// refresh extends the session with a renewed token, and reports whether
// the session still lives.
func (es *exporterSession) refresh(tok string) bool {
	if es.ended {
		return false
	}
	claims, err := es.l.cfg.Tokens.Verify(tok, token.Session, token.ExporterAudience(es.l.cfg.Name), time.Now())
	if err != nil || idOf(claims) != es.s.id {
		es.l.p.log.Warn("a renewed token does not renew this session", "err", err)
		return true
	}
	if claims.ExpiresAt.After(es.deadline) {
		es.deadline = claims.ExpiresAt.Time
		es.expiry.Reset(time.Until(es.deadline))
		es.s.refreshRelay(tok)
	}
	return true
}

func (es *exporterSession) expire() {
	if es.ended || time.Now().Before(es.deadline) {
		return
	}
	msg := fmt.Sprintf("the session of lease %s ended: its token expired at %s", es.s.id.lease, es.deadline.UTC().Format(time.RFC3339))
	es.finish(&SessionError{Err: ErrSessionExpired, Message: msg}, codeSessionExpired, msg)
}

// finish ends the session: its connections close with code, the relay
// forgets it.
func (es *exporterSession) finish(err error, code quic.ApplicationErrorCode, why string) {
	if es.ended {
		return
	}
	es.ended = true
	es.expiry.Stop()
	for qc := range es.conns {
		qc.CloseWithError(code, why)
	}
	es.s.stop()
	es.l.mu.Lock()
	if es.l.sessions[es.name] == es {
		delete(es.l.sessions, es.name)
	}
	es.l.mu.Unlock()
	es.conn.finish(err)
	go func() {
		es.end()
		es.wg.Wait()
		close(es.conn.gone)
	}()
}
