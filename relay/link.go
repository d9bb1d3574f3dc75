package relay

import (
	"crypto/ed25519"
	"fmt"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/relay/relaywire"
	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"
)

// link is one peer's connection to the relay.
type link struct {
	r         *Relay
	transport string // "udp" or "tcp"
	ctrl      *relaywire.Stream
	jkt       string // the thumbprint of the peer's key

	// UDP links only.
	quic     *quic.Conn
	observed *net.UDPAddr

	mu    sync.Mutex
	joins map[uint32]*channel
	idle  *time.Timer // runs while the link is in no session
}

// newLink registers a link, or returns nil when MaxLinks are up.
func (r *Relay) newLink(transport string, ctrl *relaywire.Stream, key ed25519.PublicKey) *link {
	l := &link{r: r, transport: transport, ctrl: ctrl, jkt: token.Thumbprint(key), joins: map[uint32]*channel{}}
	r.mu.Lock()
	full := len(r.links) >= r.cfg.Limits.MaxLinks
	if !full {
		r.links[l] = struct{}{}
	}
	r.mu.Unlock()
	if full {
		ctrl.Close()
		return nil
	}
	r.m.links.WithLabelValues(transport).Inc()
	l.idle = time.AfterFunc(linkIdleTimeout, func() { l.ctrl.Close() })
	return l
}

// deadliner is a TCP link's connection, whose reads get a deadline.
type deadliner interface{ SetReadDeadline(time.Time) error }

// run reads the link's frames until it fails, then leaves its sessions.
// tcp, for a TCP link, gets a read deadline before each frame.
func (l *link) run(tcp deadliner) {
	defer l.close()
	for {
		if tcp != nil {
			tcp.SetReadDeadline(time.Now().Add(tcpLinkTimeout))
		}
		k, p, err := l.ctrl.Read()
		if err != nil {
			l.r.log.Debug("relay link ended", "transport", l.transport, "err", err)
			return
		}
		switch k {
		case relaywire.FrameControl:
			var m relayv1.PeerMessage
			if err := proto.Unmarshal(p, &m); err != nil {
				l.r.log.Debug("relay link sent a malformed message", "err", err)
				return
			}
			l.handle(&m)
		case relaywire.FrameData:
			if tcp == nil {
				return // data belongs on UDP for a QUIC link
			}
			l.r.forwardTCP(l, p)
		case relaywire.FramePing:
			l.ctrl.SendPong()
		}
	}
}

func (l *link) handle(m *relayv1.PeerMessage) {
	switch msg := m.GetMsg().(type) {
	case *relayv1.PeerMessage_Join:
		l.r.join(l, msg.Join)
	case *relayv1.PeerMessage_Refresh:
		l.r.refresh(l, msg.Refresh)
	case *relayv1.PeerMessage_PunchRequest:
		l.r.punch(l, msg.PunchRequest.GetRef())
	case *relayv1.PeerMessage_Leave:
		l.r.leave(l, msg.Leave.GetRef(), "left")
	}
}

// send queues a message to the peer; a link that has failed drops it, and
// its run loop cleans up.
func (l *link) send(m *relayv1.RelayMessage) { l.ctrl.SendControl(m) }

// rtt is the link's round-trip time, for timing punches; 0 when unknown.
func (l *link) rtt() time.Duration {
	if l.quic == nil {
		return 0
	}
	return l.quic.ConnectionStats().SmoothedRTT
}

// joined records a channel of the link; callers hold r.mu.
func (l *link) joined(ch *channel) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.joins[ch.ref] = ch
	l.idle.Stop()
}

// forget drops a channel of the link; callers hold r.mu.
func (l *link) forget(ch *channel) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.joins[ch.ref] == ch {
		delete(l.joins, ch.ref)
	}
	if len(l.joins) == 0 {
		l.idle.Reset(linkIdleTimeout)
	}
}

// channel returns the link's join ref.
func (l *link) channel(ref uint32) *channel {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.joins[ref]
}

func (l *link) close() {
	l.idle.Stop()
	l.ctrl.Close()
	l.mu.Lock()
	joins := make([]*channel, 0, len(l.joins))
	for _, ch := range l.joins {
		joins = append(joins, ch)
	}
	l.mu.Unlock()
	for _, ch := range joins {
		l.r.leave(l, ch.ref, fmt.Sprintf("its link to the relay (%s) closed", l.transport))
	}
	l.r.mu.Lock()
	delete(l.r.links, l)
	l.r.mu.Unlock()
	l.r.m.links.WithLabelValues(l.transport).Dec()
}
