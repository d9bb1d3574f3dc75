package coordclient

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"connectrpc.com/connect"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Assignment is the lease an exporter serves, as last heard. Lease is
// empty when it serves none.
type Assignment struct {
	// Online reports whether the status stream is up; while it is down the
	// last lease heard stands, until its end time or the coordinator's word.
	Online  bool
	Lease   string
	Client  string
	EndTime time.Time
	// Ended is the lease that ended on it last, with why; empty after it
	// was reported once.
	Ended       string
	EndedReason coordinatorv1.LeaseReason
	EndedMsg    string
}

// Agent is an exporter's side of the coordinator: it registers, holds the
// status stream with heartbeats, and reconnects with backoff when the
// coordinator goes away. Watch and Current tell the exporter process (and
// the mesh) which lease it serves.
type Agent struct {
	Client    *Client
	Report    *jumpmeshv1.Report
	PublicKey ed25519.PublicKey
	Logger    *slog.Logger
	// Backoff paces reconnecting; zero takes the default.
	Backoff wait.Backoff
	// OnSession, if set, gets the session token the coordinator gives for
	// each client that dials the lease the exporter serves, and for each
	// renewal, to join the session on the mesh with. It runs on the status
	// stream's goroutine and must not block.
	OnSession func(token string)

	mu      sync.Mutex
	current Assignment
	relay   *coordinatorv1.RelayEndpoint
	subs    map[chan Assignment]struct{}
}

// defaultBackoff: first retry soon (a coordinator restart takes seconds),
// then back off to once every 30 s so a long outage costs little.
var defaultBackoff = wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 30 * time.Second}

// Current returns the lease the exporter serves as last heard.
func (a *Agent) Current() Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

// Relay is the relay the coordinator named at the latest registration:
// where the exporter meets its clients. Nil before the first, or when the
// coordinator names none.
func (a *Agent) Relay() *coordinatorv1.RelayEndpoint {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.relay
}

// Watch returns a channel that receives each new assignment (only the
// latest is kept if the reader is slow), and a function to stop.
func (a *Agent) Watch() (<-chan Assignment, func()) {
	ch := make(chan Assignment, 1)
	a.mu.Lock()
	if a.subs == nil {
		a.subs = map[chan Assignment]struct{}{}
	}
	a.subs[ch] = struct{}{}
	a.mu.Unlock()
	return ch, func() {
		a.mu.Lock()
		delete(a.subs, ch)
		a.mu.Unlock()
	}
}

func (a *Agent) set(asg Assignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.current = asg
	for ch := range a.subs {
		select {
		case <-ch:
		default:
		}
		ch <- asg
	}
}

func (a *Agent) log() *slog.Logger {
	if a.Logger == nil {
		return slog.Default()
	}
	return a.Logger
}

// Run keeps the exporter registered and online until ctx ends. It returns
// only for errors that retrying cannot fix (a revoked or expired token).
func (a *Agent) Run(ctx context.Context) error {
	backoff := a.Backoff
	if backoff.Duration == 0 {
		backoff = defaultBackoff
	}
	b := backoff
	for {
		connected, err := a.session(ctx)
		cur := a.Current()
		cur.Online, cur.Ended = false, ""
		a.set(cur)
		if ctx.Err() != nil {
			return nil
		}
		switch connect.CodeOf(err) {
		case connect.CodeUnauthenticated, connect.CodePermissionDenied:
			return a.Client.Explain(err)
		}
		if connected {
			b = backoff
		}
		delay := b.Step()
		a.log().Warn("coordinator connection lost; reconnecting", "err", a.Client.Explain(err), "in", delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// session registers and holds one status stream. connected reports
// whether the stream opened.
func (a *Agent) session(ctx context.Context) (connected bool, err error) {
	reg, err := a.Client.Exporters.Register(ctx, connect.NewRequest(&coordinatorv1.RegisterRequest{
		Report: a.Report, PublicKey: a.PublicKey,
	}))
	if err != nil {
		return false, fmt.Errorf("register: %w", err)
	}
	interval := reg.Msg.GetHeartbeatInterval().AsDuration()
	if interval <= 0 {
		return false, errors.New("register: the coordinator gave no heartbeat interval")
	}
	a.mu.Lock()
	a.relay = reg.Msg.GetRelay()
	a.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := a.Client.Exporters.Status(sctx)
	defer stream.CloseResponse()
	if err := stream.Send(&coordinatorv1.StatusRequest{}); err != nil {
		return false, fmt.Errorf("open status stream: %w", err)
	}
	beatErr := make(chan error, 1)
	go func() {
		defer stream.CloseRequest()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := stream.Send(&coordinatorv1.StatusRequest{}); err != nil {
					beatErr <- err
					return
				}
			case <-sctx.Done():
				return
			}
		}
	}()
	for {
		resp, err := stream.Receive()
		if err != nil {
			select {
			case e := <-beatErr:
				err = errors.Join(err, e)
			default:
			}
			return connected, fmt.Errorf("status stream: %w", err)
		}
		first := !connected
		if first {
			connected = true
			a.log().Info("online at the coordinator", "endpoint", a.Client.Endpoint)
		}
		a.apply(resp, first)
	}
}

// apply takes a status message, the first of its stream if first.
func (a *Agent) apply(resp *coordinatorv1.StatusResponse, first bool) {
	asg := Assignment{Online: true}
	if l := resp.GetLease(); l != nil {
		asg.Lease, asg.Client, asg.EndTime = l.GetName(), l.GetClient(), l.GetEndTime().AsTime()
	}
	if e := resp.GetEnded(); e != nil {
		asg.Ended, asg.EndedReason, asg.EndedMsg = e.GetName(), e.GetReason(), e.GetMessage()
		a.log().Info("lease ended", "lease", e.GetName(), "client", e.GetClient(), "reason", e.GetReason().String(), "message", e.GetMessage())
	}
	// Messages that only carry session tokens repeat the lease: it is
	// logged when it changes, and when a stream starts.
	if prev := a.Current(); asg.Lease != "" && (first || asg.Lease != prev.Lease || !asg.EndTime.Equal(prev.EndTime)) {
		a.log().Info("serving lease", "lease", asg.Lease, "client", asg.Client, "until", asg.EndTime.Local().Format(time.DateTime))
	}
	a.set(asg)
	if a.OnSession != nil {
		for _, tok := range resp.GetSessionTokens() {
			a.OnSession(tok)
		}
	}
}
