package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/mesh"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Timers of a shell on a leased device.
const (
	// connectTimeout bounds the wait for the exporter to join the session:
	// it joins within a round trip or two of the coordinator's word, so
	// this long means it cannot reach the relay, or is not running.
	connectTimeout = 30 * time.Second
	// releaseTimeout bounds releasing the lease on the way out.
	releaseTimeout = 10 * time.Second
	// leaseVerdictWait is how long a session that ended with its token, or
	// that the exporter ended, waits for the coordinator to say why the
	// lease ended: the lease's reason says more than the session's.
	leaseVerdictWait = 5 * time.Second
	// rewatchDelay spaces attempts to watch the lease again after the
	// coordinator went away; the session goes on meanwhile.
	rewatchDelay = time.Second
)

// remoteShell is `jmp shell` on a leased device: the lease, the mesh
// session to its exporter, and the command run with j.
type remoteShell struct {
	selector string
	lease    string
	duration time.Duration
	path     string
	logLevel slog.Level
}

func (r *remoteShell) run(ctx context.Context, cf *clientFlags, args []string) error {
	policy, err := mesh.ParsePathPolicy(r.path)
	if err != nil {
		return fmt.Errorf("--path: %w", err)
	}
	c, err := cf.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	l, own, err := r.acquire(ctx, c)
	if err != nil {
		return err
	}
	name := l.GetMetadata().GetName()
	if own {
		defer release(ctx, c, name)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: r.logLevel}))
	conn, exporter, err := dialExporter(ctx, c, name, policy, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	path := conn.Path()
	fmt.Fprintf(os.Stderr, "session with %s: %s\n", exporter, pathText(path, conn))

	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	leaseEnded := make(chan error, 1)
	ended := make(chan error, 1)
	wg.Go(func() {
		if err := watchLease(sctx, c, name); err != nil {
			leaseEnded <- err
		}
	})
	wg.Go(func() { printPathChanges(sctx, conn, exporter, path) })
	wg.Go(func() {
		if err := sessionEnd(sctx, conn, exporter, leaseEnded); err != nil {
			ended <- err
		}
	})
	s := shellSession{
		serve:  func(ctx context.Context, l net.Listener) error { return client.Forward(ctx, l, conn) },
		env:    []string{"JMP_EXPORTER=" + exporter, "JMP_LEASE=" + name},
		status: func() string { return pathText(conn.Path(), conn) },
		ended:  ended,
	}
	return s.run(ctx, args)
}

// acquire returns the lease to use once it is ready: the one named, or a
// new one (own) from the selector.
func (r *remoteShell) acquire(ctx context.Context, c *coordclient.Client) (l *coordinatorv1.Lease, own bool, err error) {
	if r.lease != "" {
		l, err = unwrap(c.Leases.GetLease(ctx, connect.NewRequest(&coordinatorv1.GetLeaseRequest{Name: leaseName(r.lease)})))
		if err != nil {
			return nil, false, c.Explain(err)
		}
	} else {
		req := &coordinatorv1.CreateLeaseRequest{Selector: r.selector}
		if r.duration != 0 {
			req.Duration = durationpb.New(r.duration)
		}
		if l, err = unwrap(c.Leases.CreateLease(ctx, connect.NewRequest(req))); err != nil {
			return nil, false, c.Explain(err)
		}
		own = true
	}
	if l.GetStatus().GetState() != coordinatorv1.LeaseState_LEASE_STATE_READY {
		if l, err = waitReady(ctx, c, l, 0, os.Stderr, own); err != nil {
			return nil, false, err
		}
	}
	fmt.Fprintf(os.Stderr, "lease %s ready: exporter %s until %s\n", l.GetMetadata().GetName(), l.GetStatus().GetExporter(),
		localTime(l.GetStatus().GetEndTime()))
	return l, own, nil
}

// release ends the lease this shell made.
func release(ctx context.Context, c *coordclient.Client, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_, err := c.Leases.DeleteLease(ctx, connect.NewRequest(&coordinatorv1.DeleteLeaseRequest{Name: name}))
	if err != nil {
		fmt.Fprintf(os.Stderr, "jmp: could not release lease %s: %v; release it with `jmp delete lease %s`\n", name, c.Explain(err), name)
	}
}

// dialExporter connects to the lease's exporter through the mesh, with a
// key of its own for this session, and returns the session and the
// exporter's name. The session renews its token by dialing again.
func dialExporter(ctx context.Context, c *coordclient.Client, lease string, policy mesh.PathPolicy, log *slog.Logger) (*mesh.Conn, string, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate session key: %w", err)
	}
	dial := func(ctx context.Context) (*coordinatorv1.DialResponse, error) {
		resp, err := unwrap(c.Leases.Dial(ctx, connect.NewRequest(&coordinatorv1.DialRequest{Lease: lease, PublicKey: key.Public().(ed25519.PublicKey)})))
		if err != nil {
			return nil, c.Explain(err)
		}
		return resp, nil
	}
	first, err := dial(ctx)
	if err != nil {
		return nil, "", err
	}
	relay, err := coordclient.RelayConfig(first.GetRelay())
	if err != nil {
		return nil, "", err
	}
	exporter := first.GetExporter()
	var renewing atomic.Bool
	token := func(ctx context.Context) (string, error) {
		if !renewing.Swap(true) {
			return first.GetToken(), nil
		}
		resp, err := dial(ctx)
		if err != nil {
			return "", err
		}
		return resp.GetToken(), nil
	}
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := mesh.Dial(dctx, mesh.DialConfig{
		Key: key, Exporter: exporter, ExporterKey: first.GetExporterPublicKey(),
		Token: token, Relay: relay, Path: policy, Logger: log,
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return nil, "", fmt.Errorf("exporter %s did not join the session within %v: is `jmp run` up on it, and can it reach the relay (%s)?",
			exporter, connectTimeout, describeRelay(first.GetRelay()))
	case err != nil:
		return nil, "", err
	}
	return conn, exporter, nil
}

// describeRelay names the relay's addresses, for people.
func describeRelay(ep *coordinatorv1.RelayEndpoint) string {
	switch {
	case ep.GetUdp() != "" && ep.GetTcp() != "":
		return "UDP " + ep.GetUdp() + ", TCP " + ep.GetTcp()
	case ep.GetUdp() != "":
		return "UDP " + ep.GetUdp()
	}
	return "TCP " + ep.GetTcp()
}

// watchLease watches the lease until it ends, and says why; nil when ctx
// ends first. It watches again when the coordinator goes away: the
// session does not need it.
func watchLease(ctx context.Context, c *coordclient.Client, name string) error {
	for {
		stream, err := c.Leases.WatchLease(ctx, connect.NewRequest(&coordinatorv1.WatchLeaseRequest{Name: name}))
		if err == nil {
			for stream.Receive() {
				if l := stream.Msg(); l.GetStatus().GetState() == coordinatorv1.LeaseState_LEASE_STATE_ENDED {
					stream.Close()
					msg := leaseReason(l)
					if m := l.GetStatus().GetMessage(); m != "" {
						msg += " (" + m + ")"
					}
					return fmt.Errorf("lease %s ended: %s", name, msg)
				}
			}
			err = stream.Err()
			stream.Close()
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case connect.CodeOf(err) == connect.CodeNotFound:
			return fmt.Errorf("lease %s is gone: %v", name, c.Explain(err))
		}
		t := time.NewTimer(rewatchDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// sessionEnd waits for the session to end, by its lease (leaseEnded) or
// its connection, and says why; nil when ctx ends first.
func sessionEnd(ctx context.Context, conn *mesh.Conn, exporter string, leaseEnded <-chan error) error {
	select {
	case err := <-leaseEnded:
		return err
	case <-ctx.Done():
		return nil
	case <-conn.Done():
	}
	err := conn.Err()
	if errors.Is(err, mesh.ErrSessionExpired) || errors.Is(err, mesh.ErrSessionEnded) {
		// The token expires with the lease, and the exporter ends the
		// sessions of a lease that ended: the coordinator says why.
		t := time.NewTimer(leaseVerdictWait)
		defer t.Stop()
		select {
		case lerr := <-leaseEnded:
			return lerr
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
	}
	return fmt.Errorf("the session with exporter %s ended: %w", exporter, err)
}

// printPathChanges tells the user on stderr when the session moves from
// the path last to another, until ctx ends.
func printPathChanges(ctx context.Context, conn *mesh.Conn, exporter string, last mesh.Path) {
	for {
		path, changed := conn.Watch()
		if path != last {
			fmt.Fprintf(os.Stderr, "session with %s: %s\n", exporter, pathText(path, conn))
			last = path
		}
		select {
		case <-changed:
		case <-conn.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// pathText says how the session's packets go on path p, for people:
// "direct, rtt 0.42ms".
func pathText(p mesh.Path, conn *mesh.Conn) string {
	var what string
	switch p {
	case mesh.PathNone:
		if conn.Err() != nil {
			return "ended"
		}
		return "reconnecting"
	case mesh.PathDirect:
		what = "direct"
	case mesh.PathRelayUDP:
		what = "relayed over UDP"
	case mesh.PathRelayTCP:
		what = "relayed over TCP"
	default:
		what = p.String()
	}
	rtt := conn.RTT()
	if rtt == 0 {
		return what + ", rtt not measured yet"
	}
	return what + ", rtt " + formatRTT(rtt)
}

// formatRTT writes a round-trip time in milliseconds, to 10 µs below
// 10 ms.
func formatRTT(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.2fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}
