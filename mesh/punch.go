package mesh

import (
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/meshwire"
	"github.com/jumpmesh/jumpmesh/mesh/udpmux"
)

// punchSchedule is when a round's pings leave, after the relay's Paired or
// Punch: dense at first, since both sides start together and the first
// round trip decides most cases, then backing off so that a slow path
// (or a far side that starts late) still gets a few chances. Seven pings
// over 3.2 s; DCUtR makes three attempts, Tailscale pings for 5 s.
//
// To the far side's NAT mapping, the first ping waits openLead after an
// opening packet: a ping that reached the far router before its own side's
// packets left would, on a Linux router that lets unsolicited packets in,
// leave a conntrack entry that moves the far side's mapping to another
// port for as long as we keep pinging (the conntrack trap). Both sides
// start within a few milliseconds of each other (the relay times it);
// openLead covers a far side that is slower to act on it. The far side's
// own addresses get the first ping at once.
var punchSchedule = []time.Duration{
	0, openLead, 200 * time.Millisecond, 400 * time.Millisecond,
	800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond,
}

// openLead is how long after its opening packet a round's first ping to a
// NAT mapping leaves.
const openLead = 100 * time.Millisecond

// openTTL is the TTL of the opening packet: enough to cross this side's
// NAT (the first router, on a home network) and so open its mapping to
// the far side, too little to reach the far side's router, which would
// keep a conntrack entry for it (see punchSchedule).
const openTTL = 2

// punchWindow is how long after a round starts its pongs still count and
// pings from new addresses are answered with pings of our own: the last
// ping plus a long round trip.
const punchWindow = 4 * time.Second

// pingMemory is how long a ping waits for its pong before it is forgotten.
const pingMemory = 10 * time.Second

// puncher sends a session's pings and matches their pongs: punching
// rounds, and the heartbeats that watch a direct path.
type puncher struct {
	s *session

	mu        sync.Mutex
	round     int
	timers    []*time.Timer
	active    bool // a round is in its window
	triggered map[netip.AddrPort]bool
	pending   map[meshwire.Nonce]sentPing
}

type sentPing struct {
	dst netip.AddrPort
	at  time.Time
}

func newPuncher(s *session) *puncher {
	return &puncher{s: s, pending: map[meshwire.Nonce]sentPing{}}
}

// start begins a round of pings to t, replacing any round in progress.
func (pu *puncher) start(t targets) {
	if t.mapped.IsValid() {
		pu.send(t.mapped, openTTL)
	}
	pu.mu.Lock()
	defer pu.mu.Unlock()
	pu.stopLocked()
	r := pu.round
	pu.active = true
	pu.triggered = map[netip.AddrPort]bool{}
	all := t.all()
	for i, at := range punchSchedule {
		to := all
		if i == 0 {
			to = t.own // the mapping's first ping waits openLead
		}
		pu.timers = append(pu.timers, time.AfterFunc(at, func() {
			if pu.current(r) {
				for _, c := range to {
					pu.ping(c)
				}
			}
		}))
	}
	pu.timers = append(pu.timers, time.AfterFunc(punchWindow, func() {
		pu.mu.Lock()
		if pu.round == r {
			pu.active = false
		}
		pu.mu.Unlock()
	}))
}

func (pu *puncher) current(r int) bool {
	pu.mu.Lock()
	defer pu.mu.Unlock()
	return pu.round == r
}

// stop ends the round in progress.
func (pu *puncher) stop() {
	pu.mu.Lock()
	defer pu.mu.Unlock()
	pu.stopLocked()
}

func (pu *puncher) stopLocked() {
	pu.round++
	pu.active = false
	for _, t := range pu.timers {
		t.Stop()
	}
	pu.timers = nil
}

// ping sends one ping to dst.
func (pu *puncher) ping(dst netip.AddrPort) { pu.send(dst, 0) }

// send sends one ping to dst, with a TTL of ttl when it is not 0 and the
// socket can set one (else not at all: see openTTL).
func (pu *puncher) send(dst netip.AddrPort, ttl int) {
	var nonce meshwire.Nonce
	rand.Read(nonce[:])
	now := time.Now()
	pu.mu.Lock()
	for n, sp := range pu.pending {
		if now.Sub(sp.at) > pingMemory {
			delete(pu.pending, n)
		}
	}
	pu.pending[nonce] = sentPing{dst: dst, at: now}
	pu.mu.Unlock()
	b, to := meshwire.AppendPunch(nil, meshwire.TypePing, pu.s.tag, nonce), net.UDPAddrFromAddrPort(dst)
	if ttl == 0 {
		pu.s.p.sock.WriteTo(b, to)
		return
	}
	if err := pu.s.p.sock.WriteToTTL(b, to, ttl); err != nil && !errors.Is(err, udpmux.ErrTTLUnsupported) {
		pu.s.p.log.Debug("opening packet not sent", "to", dst, "err", err)
	}
}

// own reports whether a ping is one this side sent, come back: a candidate
// of the far side can be this host's own address when two sites number
// their networks alike.
func (pu *puncher) own(nonce meshwire.Nonce) bool {
	pu.mu.Lock()
	defer pu.mu.Unlock()
	_, ok := pu.pending[nonce]
	return ok
}

// pinged is told of a ping from the far side (on the socket's read loop;
// the pong goes back from there). During a round, a ping from an address
// the far side did not list (its NAT gave it a new port towards us) gets a
// ping of ours, which opens our NAT to that port and finds the path.
func (pu *puncher) pinged(from *net.UDPAddr) {
	src := from.AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	pu.mu.Lock()
	trigger := pu.active && !pu.triggered[src]
	if trigger {
		pu.triggered[src] = true
	}
	pu.mu.Unlock()
	if trigger {
		pu.ping(src)
	}
}

// ponged is told of a pong (on the socket's read loop): the path to where
// its ping went works both ways.
func (pu *puncher) ponged(from *net.UDPAddr, nonce meshwire.Nonce) {
	pu.mu.Lock()
	sp, ok := pu.pending[nonce]
	delete(pu.pending, nonce)
	pu.mu.Unlock()
	if ok {
		pu.s.ctl.pong(sp.dst, time.Since(sp.at))
	}
}
