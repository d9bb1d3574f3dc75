package mesh

import (
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/meshwire"
)

// punchSchedule is when a round's pings leave, after the relay's Paired or
// Punch: dense at first, since both sides start together and the first
// round trip decides most cases, then backing off so that a slow path
// (or a far side that starts late) still gets a few chances. Seven pings
// over 3.2 s; DCUtR makes three attempts, Tailscale pings for 5 s.
var punchSchedule = []time.Duration{
	0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
	800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond,
}

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

// start begins a round of pings to cands, replacing any round in progress.
func (pu *puncher) start(cands []netip.AddrPort) {
	pu.mu.Lock()
	defer pu.mu.Unlock()
	pu.stopLocked()
	r := pu.round
	pu.active = true
	pu.triggered = map[netip.AddrPort]bool{}
	for _, at := range punchSchedule {
		pu.timers = append(pu.timers, time.AfterFunc(at, func() {
			if pu.current(r) {
				for _, c := range cands {
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
func (pu *puncher) ping(dst netip.AddrPort) {
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
	pu.s.p.sock.WriteTo(meshwire.AppendPunch(nil, meshwire.TypePing, pu.s.tag, nonce), net.UDPAddrFromAddrPort(dst))
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
