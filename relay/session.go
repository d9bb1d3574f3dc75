package relay

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net"
	"sync/atomic"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/relay/relaywire"
)

// sessionKey names a session: what every token of it has in common. The
// client's key is part of it, so two processes of one client on one lease,
// each with its own key, are two sessions; tokens refreshed for the same
// key stay in the same one.
type sessionKey struct {
	lease, client, exporter, jkt string
}

// peerKey is a client or an exporter, by name, for per-peer limits.
type peerKey struct {
	role relayv1.Role
	name string
}

// usage is what one peer uses of the relay.
type usage struct {
	sessions int
	bucket   *bucket
}

// session is the relay's side of one session: the client's channel and the
// exporter's.
type session struct {
	key      sessionKey
	deadline time.Time
	timer    *time.Timer
	sides    [3]*channel // by Role
	bucket   *bucket
}

// channel is one side's place in a session.
type channel struct {
	id       uint64
	ref      uint32
	role     relayv1.Role
	s        *session
	l        *link
	usage    *usage
	instance uint64
	// What the other side learns to punch to it.
	candidates    []*relayv1.Endpoint
	mappingVaries bool
	noUDP         bool

	addr atomic.Pointer[net.UDPAddr] // where its relayed packets come from and go to
	peer atomic.Pointer[channel]     // the other side, once it is there
}

// opposite is the other role of a session.
func opposite(r relayv1.Role) relayv1.Role { return 3 - r }

func roleName(r relayv1.Role) string {
	if r == relayv1.Role_ROLE_CLIENT {
		return "client"
	}
	return "exporter"
}

// refusal is a join or refresh the relay turns down.
type refusal struct {
	reason  relayv1.Reason
	message string
}

func (e *refusal) Error() string { return e.message }

func refuse(reason relayv1.Reason, format string, args ...any) *refusal {
	return &refusal{reason: reason, message: fmt.Sprintf(format, args...)}
}

// verify checks a session token for the exporter.
func (r *Relay) verify(raw, exporter string) (*token.Claims, *refusal) {
	if raw == "" {
		return nil, refuse(relayv1.Reason_REASON_TOKEN_INVALID, "no session token: get one from the coordinator (jmp shell does)")
	}
	if exporter == "" {
		return nil, refuse(relayv1.Reason_REASON_BAD_REQUEST, "the join names no exporter")
	}
	claims, err := r.cfg.Tokens.Verify(raw, token.Session, token.ExporterAudience(exporter), time.Now())
	switch {
	case errors.Is(err, token.ErrExpired):
		return nil, refuse(relayv1.Reason_REASON_TOKEN_EXPIRED, "session token: %v; ask the coordinator for a new one", err)
	case err != nil:
		return nil, refuse(relayv1.Reason_REASON_TOKEN_INVALID, "session token for exporter %s: %v", exporter, err)
	case claims.Exporter != exporter || claims.Lease == "" || claims.Client == "":
		return nil, refuse(relayv1.Reason_REASON_TOKEN_INVALID, "session token for exporter %s names no lease, client or exporter %s", exporter, exporter)
	case claims.Cnf == nil || claims.Cnf.JKT == "":
		return nil, refuse(relayv1.Reason_REASON_TOKEN_INVALID, "session token for exporter %s is bound to no client key", exporter)
	}
	return claims, nil
}

func (r *Relay) join(l *link, j *relayv1.Join) {
	ch, other, err := r.admit(l, j)
	if err != nil {
		r.m.joins.WithLabelValues(err.reason.String()).Inc()
		r.log.Info("relay refused a join", "role", j.GetRole(), "exporter", j.GetExporter(), "reason", err.reason, "err", err.message)
		l.send(&relayv1.RelayMessage{Msg: &relayv1.RelayMessage_Refused{Refused: &relayv1.Refused{
			Ref: j.GetRef(), Reason: err.reason, Message: err.message}}})
		return
	}
	r.m.joins.WithLabelValues("ok").Inc()
	r.log.Debug("relay join", "role", roleName(ch.role), "lease", ch.s.key.lease, "exporter", ch.s.key.exporter,
		"channel", ch.id, "paired", other != nil)
	joined := &relayv1.Joined{Ref: ch.ref, Channel: ch.id, ExpireUnixNano: ch.s.deadlineNano()}
	if l.observed != nil {
		joined.Observed = relaywire.EndpointOf(l.observed.AddrPort())
	}
	l.send(&relayv1.RelayMessage{Msg: &relayv1.RelayMessage_Joined{Joined: joined}})
	if other != nil {
		r.sendTimed(ch, other, func(to, about *channel) *relayv1.RelayMessage {
			p := &relayv1.Paired{Ref: to.ref, PeerInstance: about.instance, PeerMappingVaries: about.mappingVaries}
			if !about.noUDP {
				p.PeerCandidates = about.candidates
				if a := about.l.observed; a != nil {
					p.PeerObserved = relaywire.EndpointOf(a.AddrPort())
				}
			}
			return &relayv1.RelayMessage{Msg: &relayv1.RelayMessage_Paired{Paired: p}}
		})
	}
}

// admit checks a join and seats it in its session; other is the other side
// when it is there.
func (r *Relay) admit(l *link, j *relayv1.Join) (ch, other *channel, _ *refusal) {
	role := j.GetRole()
	if role != relayv1.Role_ROLE_CLIENT && role != relayv1.Role_ROLE_EXPORTER {
		return nil, nil, refuse(relayv1.Reason_REASON_BAD_REQUEST, "join with role %v: want client or exporter", role)
	}
	claims, rf := r.verify(j.GetToken(), j.GetExporter())
	if rf != nil {
		return nil, nil, rf
	}
	if role == relayv1.Role_ROLE_CLIENT && l.jkt != claims.Cnf.JKT {
		return nil, nil, refuse(relayv1.Reason_REASON_KEY_MISMATCH,
			"the session token is bound to another key than the one this client connected with; use the key the token was issued for")
	}
	if l.channel(j.GetRef()) != nil {
		return nil, nil, refuse(relayv1.Reason_REASON_BAD_REQUEST, "join ref %d is already in use on this link", j.GetRef())
	}
	key := sessionKey{lease: claims.Lease, client: claims.Client, exporter: claims.Exporter, jkt: claims.Cnf.JKT}
	pk := peerKey{role: role, name: claims.Client}
	if role == relayv1.Role_ROLE_EXPORTER {
		pk.name = claims.Exporter
	}
	ch = &channel{
		id:            newChannelID(),
		ref:           j.GetRef(),
		role:          role,
		l:             l,
		instance:      j.GetInstance(),
		candidates:    j.GetCandidates(),
		mappingVaries: j.GetMappingVaries(),
		noUDP:         j.GetNoUdp() || l.transport != "udp",
	}
	if l.observed != nil {
		ch.addr.Store(l.observed)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[key]
	var old *channel
	if s != nil {
		old = s.sides[role]
	}
	u := r.peers[pk]
	if u == nil {
		u = &usage{bucket: newBucket(r.cfg.Limits.PeerBandwidth)}
		r.peers[pk] = u
	}
	if old == nil && u.sessions >= r.cfg.Limits.MaxSessionsPerPeer {
		return nil, nil, refuse(relayv1.Reason_REASON_LIMIT, "%s %s is already in %d sessions through this relay, its limit",
			roleName(role), pk.name, u.sessions)
	}
	if old != nil {
		r.unseat(old)
		old.l.send(&relayv1.RelayMessage{Msg: &relayv1.RelayMessage_Refused{Refused: &relayv1.Refused{
			Ref: old.ref, Reason: relayv1.Reason_REASON_REPLACED,
			Message: "a newer join of this session, from another connection, took this one's place"}}})
		s = r.sessions[key] // gone if old was alone in it
	}
	if s == nil {
		s = &session{key: key, bucket: newBucket(r.cfg.Limits.SessionBandwidth)}
		r.sessions[key] = s
		r.m.sessions.Inc()
	}
	if exp := claims.ExpiresAt.Time; exp.After(s.deadline) {
		s.deadline = exp
		r.schedule(s)
	}
	ch.s, ch.usage = s, u
	u.sessions++
	s.sides[role] = ch
	l.joined(ch)
	r.channels.Store(ch.id, ch)
	if other = s.sides[opposite(role)]; other != nil {
		ch.peer.Store(other)
		other.peer.Store(ch)
		r.m.paired.Inc()
	}
	return ch, other, nil
}

// unseat takes a channel out of its session; callers hold r.mu. It returns
// the other side, if there.
func (r *Relay) unseat(ch *channel) *channel {
	s := ch.s
	if s.sides[ch.role] != ch {
		return nil
	}
	s.sides[ch.role] = nil
	r.channels.Delete(ch.id)
	ch.l.forget(ch)
	ch.usage.sessions--
	peer := ch.peer.Load()
	if peer != nil {
		peer.peer.Store(nil)
		r.m.paired.Dec()
	}
	if s.sides[relayv1.Role_ROLE_CLIENT] == nil && s.sides[relayv1.Role_ROLE_EXPORTER] == nil && r.sessions[s.key] == s {
		s.timer.Stop()
		delete(r.sessions, s.key)
		r.m.sessions.Dec()
	}
	return peer
}

func (r *Relay) leave(l *link, ref uint32, why string) {
	ch := l.channel(ref)
	if ch == nil {
		return
	}
	r.mu.Lock()
	peer := r.unseat(ch)
	r.mu.Unlock()
	r.log.Debug("relay leave", "role", roleName(ch.role), "lease", ch.s.key.lease, "channel", ch.id, "why", why)
	if peer != nil {
		peer.l.send(&relayv1.RelayMessage{Msg: &relayv1.RelayMessage_PeerLeft{PeerLeft: &relayv1.PeerLeft{
			Ref: peer.ref, Reason: fmt.Sprintf("the %s %s", roleName(ch.role), why)}}})
	}
}

func (r *Relay) refresh(l *link, m *relayv1.Refresh) {
	ch := l.channel(m.GetRef())
	if ch == nil {
		return
	}
	claims, rf := r.verify(m.GetToken(), ch.s.key.exporter)
	if rf == nil {
		key := sessionKey{lease: claims.Lease, client: claims.Client, exporter: claims.Exporter, jkt: claims.Cnf.JKT}
		if key != ch.s.key {
			rf = refuse(relayv1.Reason_REASON_SESSION_MISMATCH, "the refreshed token is for another session (lease %s)", claims.Lease)
		}
	}
	if rf != nil {
		l.send(&relayv1.RelayMessage{Msg: &relayv1.RelayMessage_Refused{Refused: &relayv1.Refused{
			Ref: m.GetRef(), Reason: rf.reason, Message: rf.message, Refresh: true}}})
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if exp := claims.ExpiresAt.Time; exp.After(ch.s.deadline) {
		ch.s.deadline = exp
		r.schedule(ch.s)
	}
}

// schedule (re)arms a session's deadline; callers hold r.mu.
func (r *Relay) schedule(s *session) {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timer = time.AfterFunc(time.Until(s.deadline), func() { r.expire(s) })
}

// expire ends a session whose newest token has expired.
func (r *Relay) expire(s *session) {
	r.mu.Lock()
	if r.sessions[s.key] != s || time.Now().Before(s.deadline) {
		r.mu.Unlock()
		return
	}
	var sides []*channel
	for _, ch := range s.sides {
		if ch != nil {
			sides = append(sides, ch)
			r.unseat(ch)
		}
	}
	r.mu.Unlock()
	msg := fmt.Sprintf("the session of lease %s ended: its token expired at %s", s.key.lease, s.deadline.UTC().Format(time.RFC3339))
	for _, ch := range sides {
		ch.l.send(&relayv1.RelayMessage{Msg: &relayv1.RelayMessage_Ended{Ended: &relayv1.Ended{Ref: ch.ref, Message: msg}}})
	}
}

func (s *session) deadlineNano() int64 { return s.deadline.UnixNano() }

// punch starts another round of hole punching on both sides.
func (r *Relay) punch(l *link, ref uint32) {
	ch := l.channel(ref)
	if ch == nil {
		return
	}
	peer := ch.peer.Load()
	if peer == nil {
		return
	}
	r.sendTimed(ch, peer, func(to, _ *channel) *relayv1.RelayMessage {
		return &relayv1.RelayMessage{Msg: &relayv1.RelayMessage_Punch{Punch: &relayv1.Punch{Ref: to.ref}}}
	})
}

// sendTimed sends each side a message so that both get it at about the
// same moment, half its link's round trip after sending: the nearer side's
// waits for the difference. Simultaneous punching opens both NATs before
// either side's packets arrive; an early packet could be filtered, and on
// routers that accept unsolicited packets it leaves a conntrack entry that
// spoils the port (see the package doc).
func (r *Relay) sendTimed(a, b *channel, msg func(to, about *channel) *relayv1.RelayMessage) {
	ma, mb := msg(a, b), msg(b, a)
	ra, rb := a.l.rtt(), b.l.rtt()
	if ra == 0 || rb == 0 {
		ra, rb = 0, 0 // a TCP link: no punching to time
	}
	send := func(ch *channel, m *relayv1.RelayMessage, wait time.Duration) {
		if wait <= 0 {
			ch.l.send(m)
			return
		}
		time.AfterFunc(wait, func() { ch.l.send(m) })
	}
	send(a, ma, (rb-ra)/2)
	send(b, mb, (ra-rb)/2)
}

// newChannelID returns a random channel id: it is the only thing that
// admits a packet to a channel, so it must not be guessable.
func newChannelID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1
}
