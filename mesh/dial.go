package mesh

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	meshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/mesh/v1"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/mesh/meshwire"
	"github.com/jumpmesh/jumpmesh/mesh/udpmux"
	"github.com/quic-go/quic-go"
)

// Client timers.
const (
	// heartbeatInterval paces the pings that watch a direct path (and keep
	// both NATs' mappings fresh). Tailscale pings every 3 s; a console
	// user notices a stall sooner, and a ping a second is nothing.
	heartbeatInterval = time.Second
	// pathTrust is how long a direct path lives without a pong: three
	// heartbeats and half a second for a slow round trip. Tailscale trusts
	// a path for 6.5 s after a pong, two of its heartbeats.
	pathTrust = 3*heartbeatInterval + 500*time.Millisecond
	// upgradeInterval is how often a relayed session tries again to go
	// direct, as Tailscale does: NATs and networks change, rarely faster.
	upgradeInterval = time.Minute
	// migrateTimeout bounds probing a new path before giving it up.
	migrateTimeout = 5 * time.Second
	// directOnlyWait is how long a client that may only go direct waits
	// for a pong after punching starts: the punch schedule, and a second.
	directOnlyWait = 4200 * time.Millisecond
	// refreshRetry spaces attempts to renew a token that failed.
	refreshRetry = 10 * time.Second
)

// Dial starts a client's session with an exporter through the relay and
// returns once its first connection is up, direct or relayed, whichever
// completes its handshake first. The session then moves between paths on
// its own, renews its token, and reconnects if the exporter restarts,
// until Close or the token's expiry.
func Dial(ctx context.Context, cfg DialConfig) (*Conn, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	tok, err := cfg.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("mesh: get session token: %w", err)
	}
	claims, err := readClaims(tok)
	if err != nil {
		return nil, err
	}
	if claims.Cnf == nil || claims.Cnf.JKT != token.Thumbprint(cfg.Key.Public().(ed25519.PublicKey)) {
		return nil, errors.New("mesh: the session token is not bound to this client's key; ask the coordinator for a token with this key")
	}
	if exp := claims.ExpiresAt.Time; !time.Now().Before(exp) {
		return nil, fmt.Errorf("mesh: %w: the session token expired at %s; ask the coordinator for a new one", ErrSessionExpired, exp.UTC().Format(time.RFC3339))
	}
	if claims.Exporter != cfg.Exporter {
		return nil, fmt.Errorf("mesh: the session token is for exporter %q, not %q", claims.Exporter, cfg.Exporter)
	}
	p, err := newPeer(relayv1.Role_ROLE_CLIENT, cfg.Key, cfg.Relay, cfg.Network, cfg.Logger)
	if err != nil {
		return nil, err
	}
	c := newClient(p, cfg, claims, tok)
	select {
	case <-c.ready:
		return c.conn, nil
	case <-c.conn.Done():
		return nil, c.conn.Err()
	case <-ctx.Done():
		c.conn.Close()
		return nil, fmt.Errorf("mesh: dial exporter %s: %w", cfg.Exporter, ctx.Err())
	}
}

// readClaims reads a token's claims without checking its signature: a
// client holds its own token and cannot check it; the relay and the
// exporter do.
func readClaims(tok string) (*token.Claims, error) {
	if tok == "" {
		return nil, errors.New("mesh: no session token: the coordinator gives one for a ready lease")
	}
	var c token.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		return nil, fmt.Errorf("mesh: read session token: %w", err)
	}
	if c.ExpiresAt == nil {
		return nil, errors.New("mesh: the session token has no expiry")
	}
	return &c, nil
}

// client is a client's session: its state lives on its loop.
type client struct {
	p     *peer
	s     *session
	cfg   DialConfig
	conn  *Conn
	loop  *loop
	ctx   context.Context
	end   context.CancelFunc
	ready chan struct{}
	wg    sync.WaitGroup

	// Loop state.
	qc           *quic.Conn
	path         Path
	current      *quic.Path // the path moved to, nil for the dial's own
	ctrl         *quic.SendStream
	transports   map[string]*quic.Transport // per path destination, live as long as qc
	direct       netip.AddrPort             // the far address on PathDirect
	ponged       netip.AddrPort             // the latest address a punch pong came from
	lastPong     time.Time
	dialing      map[Path]*attempt
	migrating    bool
	paired       *relayv1.Paired
	peerHere     bool
	peerInstance uint64
	deadline     time.Time
	issued       time.Time
	expiry       *time.Timer
	renewal      *time.Timer
	upgrade      *time.Timer
	directWait   *time.Timer
	stopBeat     func()
	ended        bool
}

func newClient(p *peer, cfg DialConfig, claims *token.Claims, tok string) *client {
	c := &client{
		p:          p,
		cfg:        cfg,
		loop:       newLoop(),
		ready:      make(chan struct{}),
		transports: map[string]*quic.Transport{},
		dialing:    map[Path]*attempt{},
		deadline:   claims.ExpiresAt.Time,
	}
	if claims.IssuedAt != nil {
		c.issued = claims.IssuedAt.Time
	}
	c.ctx, c.end = context.WithCancel(context.Background())
	c.conn = newConn(func() {
		c.loop.post(func() { c.finish(ErrSessionClosed, codeClosed, "the client closed the session") })
	})
	c.s = newSession(p, idOf(claims), tok)
	c.s.ctl = c
	c.wg.Go(func() { c.loop.run(c.ctx) })
	c.loop.post(func() {
		c.expiry = c.after(time.Until(c.deadline), c.expire)
		c.scheduleRefresh()
		c.s.start()
	})
	return c
}

// after runs f on the loop after d.
func (c *client) after(d time.Duration, f func()) *time.Timer {
	return time.AfterFunc(d, func() { c.loop.post(f) })
}

// The controller interface: called from the link's and socket's
// goroutines, it posts to the loop.

func (c *client) relayJoined(*relayv1.Joined) {}
func (c *client) relayPaired(m *relayv1.Paired, l *link) {
	c.loop.post(func() { c.onPaired(m, l) })
}
func (c *client) relayPunch(l *link) { c.loop.post(func() { c.onPunch(l) }) }
func (c *client) relayPeerLeft(reason string) {
	c.loop.post(func() {
		c.p.log.Debug("exporter left the relay", "reason", reason)
		c.peerHere = false
	})
}
func (c *client) relayRefused(m *relayv1.Refused) { c.loop.post(func() { c.onRefused(m) }) }
func (c *client) relayEnded(msg string) {
	c.loop.post(func() {
		c.finish(&SessionError{Err: ErrSessionExpired, Message: msg}, codeSessionExpired, msg)
	})
}
func (c *client) pong(dst netip.AddrPort, rtt time.Duration) {
	c.loop.post(func() { c.onPong(dst, rtt) })
}
func (c *client) linkDown() {}

func (c *client) onPaired(m *relayv1.Paired, l *link) {
	if c.ended {
		return
	}
	c.paired, c.peerHere = m, true
	if c.qc != nil && c.peerInstance != 0 && m.GetPeerInstance() != c.peerInstance {
		c.p.log.Info("the exporter restarted; reconnecting")
		c.drop(codePeerRestarted, "the exporter restarted")
	}
	c.peerInstance = m.GetPeerInstance()
	if c.qc == nil {
		// Attempts begun before this pairing may be talking to an
		// exporter that is gone: begin again.
		for _, a := range c.dialing {
			a.cancel()
		}
		clear(c.dialing)
		c.dialRelay(l)
	}
	c.onPunch(l)
}

func (c *client) mayPunch(l *link) bool {
	return c.cfg.Path != RelayOnly && c.paired != nil && !punchTargets(l, c.paired).empty() && c.path != PathDirect
}

func (c *client) onPunch(l *link) {
	if c.ended || !c.mayPunch(l) {
		if c.cfg.Path == DirectOnly && c.qc == nil {
			c.failDirect()
		}
		return
	}
	c.s.punch.start(punchTargets(l, c.paired))
	if c.cfg.Path == DirectOnly && c.qc == nil && c.directWait == nil {
		c.directWait = c.after(directOnlyWait, func() {
			if c.qc == nil && len(c.dialing) == 0 {
				c.failDirect()
			}
		})
	}
}

func (c *client) failDirect() {
	c.finish(fmt.Errorf("mesh: dial exporter %s: %w (forced with --path direct)", c.cfg.Exporter, ErrNoDirectPath), codeClosed, "")
}

func (c *client) onPong(dst netip.AddrPort, _ time.Duration) {
	if c.ended {
		return
	}
	switch {
	case c.path == PathDirect && dst == c.direct:
		c.lastPong = time.Now()
	case c.cfg.Path == RelayOnly:
	case c.qc == nil:
		c.ponged = dst
		if c.dialing[PathDirect] == nil {
			c.dial(PathDirect, c.p.tr, net.UDPAddrFromAddrPort(dst), dst)
		}
	case c.path != PathDirect && !c.migrating:
		c.migrate(PathDirect, dst)
	}
}

func (c *client) onRefused(m *relayv1.Refused) {
	err := &RefusedError{Reason: m.GetReason(), Message: m.GetMessage()}
	if m.GetRefresh() {
		c.p.log.Warn("the relay refused a renewed token; the session ends when the current one expires", "err", err)
		return
	}
	c.finish(fmt.Errorf("mesh: dial exporter %s: %w", c.cfg.Exporter, err), codeClosed, "")
}

// dialRelay starts the connection through the relay.
func (c *client) dialRelay(l *link) {
	if c.cfg.Path == DirectOnly || c.dialing[l.path()] != nil {
		return
	}
	tr := c.p.tr
	if l.transport == "tcp" {
		tr = c.p.tcp.transport()
	}
	c.dial(l.path(), tr, c.s.vaddr, netip.AddrPort{})
}

// attempt is one dial of the race for the session's connection.
type attempt struct {
	path   Path
	direct netip.AddrPort
	cancel context.CancelFunc
}

// dial starts an attempt.
func (c *client) dial(path Path, tr *quic.Transport, to *net.UDPAddr, direct netip.AddrPort) {
	ctx, cancel := context.WithCancel(c.ctx)
	a := &attempt{path: path, direct: direct, cancel: cancel}
	c.dialing[path] = a
	var mismatch atomic.Bool
	tlsConf := c.p.clientTLS(c.s.id.serverName(), c.cfg.ExporterKey, &mismatch)
	c.wg.Go(func() {
		qc, err := tr.Dial(ctx, to, tlsConf, e2eConfig(false))
		if mismatch.Load() {
			err = ErrExporterKey
		}
		c.loop.post(func() { c.dialed(a, qc, err) })
	})
}

func (c *client) dialed(a *attempt, qc *quic.Conn, err error) {
	a.cancel()
	path, direct := a.path, a.direct
	if c.dialing[path] == a {
		delete(c.dialing, path)
	}
	if err != nil {
		c.p.log.Debug("dial failed", "path", path, "err", err)
		switch {
		case errors.Is(err, ErrExporterKey):
			c.finish(fmt.Errorf("mesh: dial exporter %s: %w: someone else answered for it", c.cfg.Exporter, ErrExporterKey), codeClosed, "")
		case c.cfg.Path == DirectOnly && c.qc == nil && len(c.dialing) == 0:
			c.failDirect()
		}
		return
	}
	if c.ended || c.qc != nil {
		qc.CloseWithError(codeLostRace, "another path won")
		return
	}
	for _, a := range c.dialing {
		a.cancel() // the losers report back and are closed
	}
	c.qc, c.path, c.current, c.direct = qc, path, nil, direct
	if s, err := qc.OpenUniStream(); err == nil {
		c.ctrl = s
		// Tells the exporter at once which of its connections this one
		// is; a connection that lost the race may linger there.
		c.control(&meshv1.Control{Msg: &meshv1.Control_Nudge{Nudge: &meshv1.Nudge{}}})
	}
	if path == PathDirect {
		c.s.punch.stop()
		c.lastPong = time.Now()
		c.startHeartbeat(qc)
	} else {
		// Punching goes on: a pong still to come moves the connection.
		c.scheduleUpgrade()
		if c.ponged.IsValid() {
			// The relay won the race, but punching already found a
			// path: move to it now.
			c.migrate(PathDirect, c.ponged)
		}
	}
	c.ponged = netip.AddrPort{}
	c.wg.Go(func() {
		<-qc.Context().Done()
		c.loop.post(func() { c.closed(qc) })
	})
	c.p.log.Debug("connected", "path", path)
	c.conn.set(qc, path)
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
}

// startHeartbeat watches a direct path: a ping every heartbeatInterval,
// and a move to the relay when no pong came for pathTrust.
func (c *client) startHeartbeat(qc *quic.Conn) {
	c.stopHeartbeat()
	stop := make(chan struct{})
	c.stopBeat = func() { close(stop) }
	c.wg.Go(func() {
		t := time.NewTicker(heartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.loop.post(func() { c.beat(qc) })
			case <-stop:
				return
			case <-c.ctx.Done():
				return
			}
		}
	})
}

func (c *client) stopHeartbeat() {
	if c.stopBeat != nil {
		c.stopBeat()
		c.stopBeat = nil
	}
}

func (c *client) beat(qc *quic.Conn) {
	if c.qc != qc || c.path != PathDirect {
		return
	}
	if time.Since(c.lastPong) <= pathTrust {
		c.s.punch.ping(c.direct)
		return
	}
	if l := c.p.link.current(); l != nil && l.transport == "udp" && c.cfg.Path != DirectOnly && !c.migrating {
		c.p.log.Info("the direct path died; moving to the relay", "addr", c.direct)
		if c.current != nil && c.transports[c.direct.String()] != nil {
			c.fallBack()
			return
		}
		// The dial's own path, on the socket's transport, cannot be
		// turned: migrate, which needs room in the congestion window.
		c.migrate(PathRelayUDP, netip.AddrPort{})
	}
}

// fallBack turns the direct path the connection moved to towards the
// relay: its packets go on at once, with no probe (a probe waits for room
// in a congestion window full of packets lost on the dead path, which an
// upload never leaves). The exporter follows the new address as it does a
// migration.
func (c *client) fallBack() {
	key := c.direct.String()
	tr := c.transports[key]
	pc := tr.Conn.(udpmux.PathConn)
	pc.Retarget(c.s.vaddr)
	c.s.relayPath.Store(&pc)
	// The transport now goes to the relay; a direct path found later
	// gets one of its own. It lives with the connection.
	delete(c.transports, key)
	c.transports["fallback "+key] = tr
	c.path, c.direct = PathRelayUDP, netip.AddrPort{}
	c.stopHeartbeat()
	c.scheduleUpgrade()
	c.control(&meshv1.Control{Msg: &meshv1.Control_Nudge{Nudge: &meshv1.Nudge{}}})
	c.conn.set(c.qc, PathRelayUDP)
}

// scheduleUpgrade asks the relay for a punching round every
// upgradeInterval while the session is relayed.
func (c *client) scheduleUpgrade() {
	if c.upgrade != nil {
		c.upgrade.Stop()
	}
	c.upgrade = c.after(upgradeInterval, func() {
		if c.ended || c.qc == nil || c.path == PathDirect {
			return
		}
		if l := c.p.link.current(); c.mayPunch(l) {
			c.s.requestPunch()
		}
		c.scheduleUpgrade()
	})
}

// migrate moves the connection to the relay (to the session's virtual
// address) or to a direct address, with QUIC connection migration: a new
// path through the same socket, probed, then switched to. The far side
// follows when it sees validated, non-probing packets from the new address.
func (c *client) migrate(to Path, direct netip.AddrPort) {
	qc := c.qc
	dst, key := c.s.vaddr, "relay"
	if to == PathDirect {
		dst, key = net.UDPAddrFromAddrPort(direct), direct.String()
	}
	tr := c.transports[key]
	if tr == nil {
		pc := c.p.sock.PathConn(dst)
		tr = &quic.Transport{Conn: pc}
		c.transports[key] = tr
		if to != PathDirect {
			c.s.relayPath.Store(&pc)
		}
	}
	c.migrating = true
	c.wg.Go(func() {
		path, err := qc.AddPath(tr)
		if err == nil {
			ctx, cancel := context.WithTimeout(c.ctx, migrateTimeout)
			err = path.Probe(ctx)
			cancel()
			if err == nil {
				err = path.Switch()
			}
			if err != nil {
				path.Close()
			}
		}
		c.loop.post(func() { c.migrated(qc, to, direct, path, err) })
	})
}

func (c *client) migrated(qc *quic.Conn, to Path, direct netip.AddrPort, path *quic.Path, err error) {
	c.migrating = false
	if qc != c.qc {
		return
	}
	if err != nil {
		c.p.log.Debug("path move failed", "to", to, "addr", direct, "err", err)
		return
	}
	if c.current != nil {
		c.current.Close()
	}
	c.current, c.path, c.direct = path, to, direct
	c.p.log.Info("moved the session", "path", to, "addr", direct)
	if to == PathDirect {
		c.lastPong = time.Now()
		c.s.punch.stop()
		c.startHeartbeat(qc)
	} else {
		c.stopHeartbeat()
		c.scheduleUpgrade()
	}
	c.control(&meshv1.Control{Msg: &meshv1.Control_Nudge{Nudge: &meshv1.Nudge{}}})
	c.conn.set(qc, to)
}

// control sends a control message to the exporter.
func (c *client) control(m *meshv1.Control) {
	if c.ctrl != nil {
		meshwire.WriteControl(c.ctrl, m)
	}
}

// closed handles the end of a connection.
func (c *client) closed(qc *quic.Conn) {
	if c.ended || qc != c.qc {
		return
	}
	err := closeError(context.Cause(qc.Context()))
	c.forget()
	if errors.Is(err, ErrSessionExpired) || errors.Is(err, ErrSessionEnded) {
		c.finish(err, codeClosed, "")
		return
	}
	c.p.log.Info("lost the connection to the exporter; reconnecting", "err", err)
	if l := c.p.link.current(); l != nil && c.peerHere {
		c.dialRelay(l)
		if c.mayPunch(l) {
			c.s.requestPunch()
		}
	}
}

// drop closes the connection, which will be replaced.
func (c *client) drop(code quic.ApplicationErrorCode, why string) {
	c.qc.CloseWithError(code, why) // first: closing its paths' transports would destroy it
	c.forget()
}

// forget lets go of the connection and its paths.
func (c *client) forget() {
	c.stopHeartbeat()
	c.s.relayPath.Store(nil)
	c.qc, c.current, c.ctrl, c.path = nil, nil, nil, PathNone
	for _, tr := range c.transports {
		tr.Close()
	}
	clear(c.transports)
	c.conn.set(nil, PathNone)
}

// scheduleRefresh renews the token when a quarter of its life is left.
func (c *client) scheduleRefresh() {
	life := c.deadline.Sub(c.issued)
	if c.issued.IsZero() || life <= 0 {
		life = time.Until(c.deadline)
	}
	c.renewal = c.after(time.Until(c.deadline)-life/4, c.refresh)
}

func (c *client) refresh() {
	if c.ended {
		return
	}
	c.wg.Go(func() {
		tok, err := c.cfg.Token(c.ctx)
		c.loop.post(func() { c.refreshed(tok, err) })
	})
}

func (c *client) refreshed(tok string, err error) {
	if c.ended {
		return
	}
	var claims *token.Claims
	if err == nil {
		claims, err = readClaims(tok)
	}
	if err != nil {
		c.p.log.Warn("cannot renew the session token", "err", err, "retry_in", refreshRetry)
		if time.Until(c.deadline) > refreshRetry {
			c.renewal = c.after(refreshRetry, c.refresh)
		}
		return
	}
	if idOf(claims) != c.s.id || !claims.ExpiresAt.After(c.deadline) {
		// The lease ends with this token, unless someone extends it:
		// ask again, more often as the end nears.
		if left := time.Until(c.deadline); left > refreshRetry {
			c.renewal = c.after(max(refreshRetry, left/8), c.refresh)
		}
		return
	}
	c.deadline = claims.ExpiresAt.Time
	if claims.IssuedAt != nil {
		c.issued = claims.IssuedAt.Time
	}
	c.s.refreshRelay(tok)
	c.control(&meshv1.Control{Msg: &meshv1.Control_Refresh{Refresh: &meshv1.Refresh{Token: tok}}})
	c.expiry.Reset(time.Until(c.deadline))
	c.scheduleRefresh()
}

// expire ends the session when its newest token expires.
func (c *client) expire() {
	if c.ended || time.Now().Before(c.deadline) {
		return
	}
	msg := fmt.Sprintf("the session of lease %s ended: its token expired at %s", c.s.id.lease, c.deadline.UTC().Format(time.RFC3339))
	c.finish(&SessionError{Err: ErrSessionExpired, Message: msg}, codeSessionExpired, msg)
}

// finish ends the session: the connection closes with code, the relay
// forgets the session, the socket closes.
func (c *client) finish(err error, code quic.ApplicationErrorCode, why string) {
	if c.ended {
		return
	}
	c.ended = true
	c.stopHeartbeat()
	for _, t := range []*time.Timer{c.expiry, c.renewal, c.upgrade, c.directWait} {
		if t != nil {
			t.Stop()
		}
	}
	for _, a := range c.dialing {
		a.cancel()
	}
	if c.qc != nil {
		c.qc.CloseWithError(code, why)
	}
	c.s.stop()
	c.conn.finish(err)
	go func() {
		c.end()
		c.wg.Wait()
		for _, tr := range c.transports {
			tr.Close()
		}
		c.p.close()
		close(c.conn.gone)
	}()
}
