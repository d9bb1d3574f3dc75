package mesh

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/jumpmesh/jumpmesh/mesh/identity"
	"github.com/jumpmesh/jumpmesh/mesh/meshwire"
	"github.com/jumpmesh/jumpmesh/mesh/udpmux"
	"github.com/jumpmesh/jumpmesh/relay/relaywire"
	"github.com/quic-go/quic-go"
)

// peer is one side of the mesh in a process: its one UDP socket and QUIC
// transport, its link to the relay, and the sessions that use them. A
// client has a peer per Dial; an exporter one per Listener.
type peer struct {
	role  relayv1.Role
	cert  tls.Certificate
	relay Relay
	net   Network
	log   *slog.Logger

	sock udpmux.Conn
	tr   *quic.Transport // on sock: the relay link, direct and relayed connections
	port uint16          // sock's port, for candidates

	// The relay's UDP address, resolved; nil when it has none.
	relayUDP atomic.Pointer[net.UDPAddr]

	// Read on the socket's read loop and quic-go's send loop.
	byRef     sync.Map // join ref (also the virtual address's index) -> *session
	byChannel sync.Map // relay channel id -> *session
	byTag     sync.Map // meshwire.Tag -> *session

	probes *prober
	link   *linkManager
	tcp    *tcpPath // relayed packets over a TCP link

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	nextRef uint32
	count   int // sessions
}

func newPeer(role relayv1.Role, key ed25519.PrivateKey, relay Relay, nw Network, log *slog.Logger) (*peer, error) {
	cert, err := identity.Certificate(key)
	if err != nil {
		return nil, err
	}
	pc := nw.PacketConn
	if pc == nil {
		if pc, err = net.ListenPacket("udp", ":0"); err != nil {
			return nil, fmt.Errorf("mesh: open UDP socket: %w", err)
		}
	}
	p := &peer{role: role, cert: cert, relay: relay, net: nw, log: log, probes: newProber()}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		p.port = uint16(ua.Port)
	}
	p.sock = udpmux.New(pc, (*handler)(p))
	p.tr = &quic.Transport{Conn: p.sock}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.tcp = newTCPPath(p)
	p.link = newLinkManager(p)
	return p, nil
}

// close ends the link, the transports and the socket.
func (p *peer) close() {
	p.cancel()
	p.link.stop()
	p.wg.Wait()
	p.tcp.close()
	p.tr.Close()
	p.sock.Close()
}

// addSession registers s and gives it its ref and virtual address.
func (p *peer) addSession(s *session) {
	p.mu.Lock()
	p.nextRef++
	s.ref = p.nextRef
	p.count++
	p.mu.Unlock()
	s.vaddr = udpmux.VirtualAddr(s.ref)
	p.byRef.Store(s.ref, s)
	p.byTag.Store(s.tag, s)
	p.link.want()
}

// removeSession forgets s; the link goes when no session needs it.
func (p *peer) removeSession(s *session) {
	if _, ok := p.byRef.LoadAndDelete(s.ref); !ok {
		return
	}
	p.byTag.CompareAndDelete(s.tag, s)
	if ch := s.channel.Load(); ch != 0 {
		p.byChannel.CompareAndDelete(ch, s)
	}
	p.mu.Lock()
	p.count--
	p.mu.Unlock()
	p.link.idle()
}

func (p *peer) sessionCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

func (p *peer) sessions() []*session {
	var out []*session
	p.byRef.Range(func(_, v any) bool {
		out = append(out, v.(*session))
		return true
	})
	return out
}

func (p *peer) session(ref uint32) *session {
	v, ok := p.byRef.Load(ref)
	if !ok {
		return nil
	}
	return v.(*session)
}

// isRelay reports whether a datagram came from the relay.
func (p *peer) isRelay(from *net.UDPAddr) bool {
	r := p.relayUDP.Load()
	return r != nil && r.Port == from.Port && r.IP.Equal(from.IP)
}

// candidates are the addresses this peer offers for a direct path, besides
// the one the relay sees.
func (p *peer) candidates() []*relayv1.Endpoint {
	var out []*relayv1.Endpoint
	addrs := p.net.LocalAddrs
	if addrs == nil {
		addrs = interfaceAddrs()
	}
	for _, a := range addrs {
		out = append(out, relaywire.EndpointOf(netip.AddrPortFrom(a, p.port)))
	}
	for _, a := range p.net.PublicAddrs {
		out = append(out, relaywire.EndpointOf(a))
	}
	return out
}

// interfaceAddrs lists the host's addresses that another host might reach:
// not loopback, not link-local.
func interfaceAddrs() []netip.Addr {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ia := range ifaddrs {
		pfx, err := netip.ParsePrefix(ia.String())
		if err != nil {
			continue
		}
		a := pfx.Addr().Unmap()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() {
			continue
		}
		out = append(out, a)
	}
	return out
}

// handler is the peer as its socket's udpmux.Handler.
type handler peer

// Inbound takes the packets that share the socket with QUIC: relayed
// packets become packets from the session's virtual address; probe
// answers, pings and pongs are handled here, on the read loop.
func (h *handler) Inbound(b []byte, from *net.UDPAddr) (udpmux.Action, []byte, *net.UDPAddr) {
	p := (*peer)(h)
	switch b[0] {
	case relaywire.TypeData:
		id, err := relaywire.DataChannel(b)
		if err != nil || !p.isRelay(from) {
			break
		}
		if v, ok := p.byChannel.Load(id); ok {
			s := v.(*session)
			if pc := s.relayPath.Load(); pc != nil {
				(*pc).Deliver(b[relaywire.DataHeaderSize:], s.vaddr)
				break
			}
			return udpmux.Deliver, b[relaywire.DataHeaderSize:], s.vaddr
		}
	case relaywire.TypeProbeReply:
		p.probes.answer(b)
	case relaywire.TypeUnknownChannel:
		id, err := relaywire.ParseUnknownChannel(b)
		if err != nil || !p.isRelay(from) {
			break
		}
		if _, ok := p.byChannel.Load(id); ok {
			p.link.reconnect("the relay does not know this peer's channel; it may have restarted")
		}
	case meshwire.TypePing:
		tag, nonce, err := meshwire.ParsePunch(b)
		if err != nil {
			break
		}
		if v, ok := p.byTag.Load(tag); ok && !v.(*session).punch.own(nonce) {
			v.(*session).punch.pinged(from)
			b[0] = meshwire.TypePong
			return udpmux.Forward, b[:meshwire.PunchSize], from
		}
	case meshwire.TypePong:
		tag, nonce, err := meshwire.ParsePunch(b)
		if err != nil {
			break
		}
		if v, ok := p.byTag.Load(tag); ok {
			v.(*session).punch.ponged(from, nonce)
		}
	}
	return udpmux.Drop, nil, nil
}

// Redirect sends a session's packets for its virtual address to the relay,
// behind its channel's header.
func (h *handler) Redirect(to *net.UDPAddr) ([]byte, *net.UDPAddr, bool) {
	p := (*peer)(h)
	s := p.session(virtualIndex(to))
	relay := p.relayUDP.Load()
	if s == nil || relay == nil {
		return nil, nil, false
	}
	hdr := s.header.Load()
	if hdr == nil {
		return nil, nil, false
	}
	return hdr[:], relay, true
}

// virtualIndex is the index a virtual address was made from.
func virtualIndex(a *net.UDPAddr) uint32 {
	ip := a.IP.To16()
	return uint32(ip[12])<<24 | uint32(ip[13])<<16 | uint32(ip[14])<<8 | uint32(ip[15])
}
