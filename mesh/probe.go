package mesh

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/relay/relaywire"
)

// probeInterval spaces address probes: a lost probe is sent again well
// within the time a QUIC handshake to the relay takes on a slow link.
const probeInterval = 250 * time.Millisecond

// probeGrace is how long a link that is up waits for the second port's
// answer before joining without it: both probes leave with the QUIC
// Initial, so their answers are normally in before the handshake ends.
const probeGrace = 300 * time.Millisecond

// natInfo is what the probes found.
type natInfo struct {
	reflexive netip.AddrPort // as the relay's main port sees this peer
	varies    bool           // the second port saw another port
}

// prober matches probe answers to probes.
type prober struct {
	mu     sync.Mutex
	nonces map[[relaywire.NonceSize]byte]int // which relay port: 0 main, 1 second
	seen   [2]netip.AddrPort
	got    chan struct{} // closed and replaced at each answer
}

func newProber() *prober {
	return &prober{nonces: map[[relaywire.NonceSize]byte]int{}, got: make(chan struct{})}
}

// answer takes a probe answer from the socket's read loop.
func (pr *prober) answer(b []byte) {
	nonce, addr, err := relaywire.ParseProbeReply(b)
	if err != nil {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	i, ok := pr.nonces[nonce]
	if !ok {
		return
	}
	pr.seen[i] = addr
	close(pr.got)
	pr.got = make(chan struct{})
}

func (pr *prober) state() (seen [2]netip.AddrPort, got chan struct{}) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.seen, pr.got
}

// run probes the relay's two ports from the peer's socket until both have
// answered or ctx ends.
func (pr *prober) run(ctx context.Context, p *peer, main, second *net.UDPAddr) {
	pr.mu.Lock()
	pr.seen = [2]netip.AddrPort{}
	clear(pr.nonces)
	pr.mu.Unlock()
	targets := []*net.UDPAddr{main, second}
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		seen, got := pr.state()
		for i, to := range targets {
			if to == nil || seen[i].IsValid() {
				continue
			}
			var nonce [relaywire.NonceSize]byte
			rand.Read(nonce[:])
			pr.mu.Lock()
			pr.nonces[nonce] = i
			pr.mu.Unlock()
			p.sock.WriteTo(relaywire.AppendProbe(nil, nonce), to)
		}
		if seen[0].IsValid() && (second == nil || seen[1].IsValid()) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-got:
		case <-t.C:
		}
	}
}

// result waits up to grace for both answers and tells what they show. A
// missing second answer counts as no variation: punching is then tried.
func (pr *prober) result(ctx context.Context, grace time.Duration) natInfo {
	deadline := time.After(grace)
	for {
		seen, got := pr.state()
		if seen[0].IsValid() && seen[1].IsValid() {
			return natInfo{reflexive: seen[0], varies: seen[0] != seen[1]}
		}
		select {
		case <-got:
		case <-deadline:
			return natInfo{reflexive: seen[0]}
		case <-ctx.Done():
			return natInfo{reflexive: seen[0]}
		}
	}
}
