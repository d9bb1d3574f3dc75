package mesh

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/mesh/meshwire"
	"github.com/jumpmesh/jumpmesh/mesh/udpmux"
	"github.com/jumpmesh/jumpmesh/relay/relaywire"
)

// sessionID is what every token of a session has in common, as the relay
// keys it: the lease, both peers, and the client's key.
type sessionID struct {
	lease, client, exporter, jkt string
}

func idOf(c *token.Claims) sessionID {
	id := sessionID{lease: c.Lease, client: c.Client, exporter: c.Exporter}
	if c.Cnf != nil {
		id.jkt = c.Cnf.JKT
	}
	return id
}

func (id sessionID) hash(purpose string) [sha256.Size]byte {
	return sha256.Sum256([]byte(purpose + "\x00" + id.lease + "\x00" + id.client + "\x00" + id.exporter + "\x00" + id.jkt))
}

// tag names the session in punch packets.
func (id sessionID) tag() meshwire.Tag {
	h := id.hash("jumpmesh punch")
	return meshwire.Tag(h[:8])
}

// serverName is the TLS server name of the session's connections: how an
// exporter with many sessions knows which one a handshake is for (and so
// which client key to expect). It is a hash: nothing of the lease shows.
func (id sessionID) serverName() string {
	h := id.hash("jumpmesh session")
	return "s" + hex.EncodeToString(h[:16]) + ".jumpmesh"
}

// controller is the role-specific half of a session (a client's or an
// exporter's). The session calls it from the link's and the socket's
// goroutines; it posts to its own loop.
type controller interface {
	relayJoined(*relayv1.Joined)
	relayPaired(*relayv1.Paired, *link)
	relayPunch(*link)
	relayPeerLeft(reason string)
	relayRefused(*relayv1.Refused)
	relayEnded(message string)
	pong(dst netip.AddrPort, rtt time.Duration)
	linkDown()
}

// session is a session's place in its peer: its relay join, its virtual
// address, its punch packets.
type session struct {
	p        *peer
	id       sessionID
	tag      meshwire.Tag
	role     relayv1.Role
	instance uint64
	ctl      controller
	punch    *puncher

	// Set by peer.addSession.
	ref   uint32
	vaddr *net.UDPAddr

	channel atomic.Uint64
	header  atomic.Pointer[[relaywire.DataHeaderSize]byte]
	// relayPath, once the client moved its connection to a new relayed
	// path, is that path's conn: relayed packets go there, so that QUIC
	// answers path challenges on the path they came by.
	relayPath atomic.Pointer[udpmux.PathConn]

	mu    sync.Mutex
	token string // the newest, for joining again
}

func newSession(p *peer, id sessionID, tok string) *session {
	var b [8]byte
	rand.Read(b[:])
	s := &session{p: p, id: id, tag: id.tag(), role: p.role, instance: binary.BigEndian.Uint64(b[:]), token: tok}
	s.punch = newPuncher(s)
	return s
}

// start registers the session with its peer, which joins it at the relay
// once the link is up. ctl must be set.
func (s *session) start() {
	s.p.addSession(s)
	if l := s.p.link.current(); l != nil {
		s.linkUp(l)
	}
}

// stop leaves the relay and the peer.
func (s *session) stop() {
	s.punch.stop()
	s.p.link.send(&relayv1.PeerMessage{Msg: &relayv1.PeerMessage_Leave{Leave: &relayv1.Leave{Ref: s.ref}}})
	s.p.removeSession(s)
}

func (s *session) setToken(tok string) {
	s.mu.Lock()
	s.token = tok
	s.mu.Unlock()
}

// linkUp joins (again) on a new link.
func (s *session) linkUp(l *link) {
	s.mu.Lock()
	tok := s.token
	s.mu.Unlock()
	j := &relayv1.Join{
		Ref:           s.ref,
		Token:         tok,
		Exporter:      s.id.exporter,
		Role:          s.role,
		Instance:      s.instance,
		MappingVaries: l.nat.varies,
		NoUdp:         l.transport != "udp",
	}
	if l.transport == "udp" {
		j.Candidates = s.p.candidates()
	}
	l.ctrl.SendControl(&relayv1.PeerMessage{Msg: &relayv1.PeerMessage_Join{Join: j}})
}

func (s *session) linkDown() { s.ctl.linkDown() }

// fromRelay takes a relay message for the session.
func (s *session) fromRelay(l *link, msg *relayv1.RelayMessage) {
	switch x := msg.GetMsg().(type) {
	case *relayv1.RelayMessage_Joined:
		s.setChannel(x.Joined.GetChannel())
		s.ctl.relayJoined(x.Joined)
	case *relayv1.RelayMessage_Paired:
		s.ctl.relayPaired(x.Paired, l)
	case *relayv1.RelayMessage_Punch:
		s.ctl.relayPunch(l)
	case *relayv1.RelayMessage_PeerLeft:
		s.ctl.relayPeerLeft(x.PeerLeft.GetReason())
	case *relayv1.RelayMessage_Refused:
		s.ctl.relayRefused(x.Refused)
	case *relayv1.RelayMessage_Ended:
		s.ctl.relayEnded(x.Ended.GetMessage())
	}
}

// setChannel makes relayed packets of the channel the session's.
func (s *session) setChannel(id uint64) {
	if old := s.channel.Swap(id); old != 0 && old != id {
		s.p.byChannel.CompareAndDelete(old, s)
	}
	var hdr [relaywire.DataHeaderSize]byte
	relaywire.PutDataHeader(hdr[:], id)
	s.header.Store(&hdr)
	s.p.byChannel.Store(id, s)
}

// refreshRelay hands the relay a newer token.
func (s *session) refreshRelay(tok string) {
	s.setToken(tok)
	s.p.link.send(&relayv1.PeerMessage{Msg: &relayv1.PeerMessage_Refresh{Refresh: &relayv1.Refresh{Ref: s.ref, Token: tok}}})
}

// requestPunch asks the relay for another punching round.
func (s *session) requestPunch() {
	s.p.link.send(&relayv1.PeerMessage{Msg: &relayv1.PeerMessage_PunchRequest{PunchRequest: &relayv1.PunchRequest{Ref: s.ref}}})
}

// targets are the far side's addresses to punch to.
type targets struct {
	// mapped is the address the relay saw the far side at when it is not
	// one of the far side's own: its NAT's mapping. The router behind it
	// must not hear from us before the far side has sent (see openLead).
	mapped netip.AddrPort
	// own are the addresses the far side has itself (its interfaces', a
	// port forward it named): no router keeps a trap for those.
	own []netip.AddrPort
}

func (t targets) empty() bool { return !t.mapped.IsValid() && len(t.own) == 0 }

// all lists every target.
func (t targets) all() []netip.AddrPort {
	if !t.mapped.IsValid() {
		return t.own
	}
	return append([]netip.AddrPort{t.mapped}, t.own...)
}

// punchTargets are the addresses to punch to for a direct path, none when
// punching cannot work: either side has no UDP. The address the relay sees
// the far side at is left out when both NATs map by destination (their
// reflexive addresses are of no use to each other); its own addresses, on
// a shared LAN say, may still be.
func punchTargets(l *link, m *relayv1.Paired) targets {
	var t targets
	if l == nil || l.transport != "udp" {
		return t
	}
	for _, e := range m.GetPeerCandidates() {
		if a, ok := relaywire.AddrPortOf(e); ok {
			t.own = append(t.own, a)
		}
	}
	if a, ok := relaywire.AddrPortOf(m.GetPeerObserved()); ok && !(l.nat.varies && m.GetPeerMappingVaries()) && !slices.Contains(t.own, a) {
		t.mapped = a
	}
	return t
}
