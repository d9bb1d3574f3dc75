package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/scheduler"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/labels"
)

// writeParallelism bounds the writes of one plan in flight at once: enough
// for the store to commit many in one batch.
const writeParallelism = 256

// scheduleLoop plans whenever something changed or a planned time comes,
// and applies each plan before making the next.
func (c *Coordinator) scheduleLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-c.kick:
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		start := time.Now()
		in := c.snapshot()
		plan := scheduler.Schedule(in, start, scheduler.Config{
			ExporterGrace:    c.cfg.ExporterGrace,
			PreemptionNotice: c.cfg.PreemptionNotice,
			History:          c.cfg.LeaseHistory,
		})
		positions := make(map[string]int32, len(plan.Queue))
		for i, name := range plan.Queue {
			positions[name] = int32(i)
		}
		c.queue.Store(&positions)
		c.apply(ctx, plan)
		c.m.passes.Observe(time.Since(start).Seconds())
		wait := time.Hour
		if !plan.Wake.IsZero() {
			wait = max(time.Until(plan.Wake), 0)
		}
		timer.Reset(wait)
	}
}

// snapshot copies what the scheduler needs out of the cache.
func (c *Coordinator) snapshot() *scheduler.Input {
	c.cache.mu.RLock()
	defer c.cache.mu.RUnlock()
	in := &scheduler.Input{
		Exporters: make([]scheduler.Exporter, 0, len(c.cache.exporters)),
		Leases:    make([]scheduler.Lease, 0, len(c.cache.leases)),
		Clients:   make(map[string]labels.Set, len(c.cache.clients)),
		Policies:  make([]scheduler.Policy, 0, len(c.cache.policies)),
	}
	for _, e := range c.cache.exporters {
		in.Exporters = append(in.Exporters, scheduler.Exporter{
			Name:     e.GetMetadata().GetName(),
			Labels:   e.GetMetadata().GetLabels(),
			Online:   e.GetOnline(),
			LastSeen: e.GetLastSeen().AsTime(),
			Lease:    e.GetLease(),
		})
	}
	slices.SortFunc(in.Exporters, func(a, b scheduler.Exporter) int { return strings.Compare(a.Name, b.Name) })
	for _, e := range c.cache.leases {
		in.Leases = append(in.Leases, schedLease(e))
	}
	for name, cl := range c.cache.clients {
		in.Clients[name] = cl.GetMetadata().GetLabels()
	}
	for _, p := range c.cache.policies {
		in.Policies = append(in.Policies, p.parsed)
	}
	return in
}

func schedLease(e *leaseEntry) scheduler.Lease {
	l := e.obj
	st := l.GetStatus()
	out := scheduler.Lease{
		Name:        l.GetMetadata().GetName(),
		Client:      l.GetSpec().GetClient(),
		Selector:    e.selector,
		Exporter:    l.GetSpec().GetExporter(),
		Created:     l.GetMetadata().GetCreateTime().AsTime(),
		Duration:    l.GetSpec().GetDuration().AsDuration(),
		Begin:       optTime(l.GetSpec().GetBeginTime()),
		End:         optTime(l.GetSpec().GetEndTime()),
		State:       st.GetState(),
		Reason:      st.GetReason(),
		Priority:    st.GetPriority(),
		Preemptible: st.GetPreemptible(),
		PreemptedBy: st.GetPreemptedBy(),
		Assigned:    st.GetExporter(),
		EndTime:     optTime(st.GetEndTime()),
		Transition:  optTime(st.GetTransitionTime()),
	}
	return out
}

// apply carries out a plan: ends, notices and releases first, as the
// assignments may take the exporters they free. Each write checks its
// preconditions afresh, so a step that no longer fits is skipped.
func (c *Coordinator) apply(ctx context.Context, plan scheduler.Plan) {
	g := newGroup()
	for _, e := range plan.Ends {
		g.do(func() error { return c.endLease(ctx, e.Lease, e.Reason, e.Message) })
	}
	for _, n := range plan.Notices {
		g.do(func() error { return c.noticeLease(ctx, n) })
	}
	for _, r := range plan.Releases {
		g.do(func() error { return c.releaseClaim(ctx, r.Exporter, r.Lease) })
	}
	for _, p := range plan.Pending {
		g.do(func() error { return c.setPending(ctx, p) })
	}
	for _, name := range plan.Deletes {
		g.do(func() error { return c.deleteEnded(ctx, name) })
	}
	g.wait(c)
	for _, a := range plan.Assigns {
		g.do(func() error { return c.assign(ctx, a) })
	}
	g.wait(c)
}

// group runs writes in parallel, a bounded number at a time.
type group struct {
	wg   sync.WaitGroup
	sem  chan struct{}
	mu   sync.Mutex
	errs []error
}

func newGroup() *group { return &group{sem: make(chan struct{}, writeParallelism)} }

func (g *group) do(fn func() error) {
	g.sem <- struct{}{}
	g.wg.Go(func() {
		defer func() { <-g.sem }()
		if err := fn(); err != nil {
			g.mu.Lock()
			g.errs = append(g.errs, err)
			g.mu.Unlock()
		}
	})
}

// wait waits for the writes and logs those that failed; the next plan
// retries what still needs doing.
func (g *group) wait(c *Coordinator) {
	g.wg.Wait()
	for _, err := range g.errs {
		if !errors.Is(err, context.Canceled) {
			c.log.Warn("scheduler write failed; will retry", "err", err)
		}
	}
	g.errs = g.errs[:0]
}

// assign claims the exporter for the lease, then marks the lease ready.
// The claim is the compare-and-swap that lets exactly one lease win an
// exporter; if the lease changed meanwhile, the claim is given back.
func (c *Coordinator) assign(ctx context.Context, a scheduler.Assign) error {
	now := time.Now()
	_, err := update(ctx, c, store.Exporters, a.Exporter, func(e *coordinatorv1.Exporter) error {
		switch {
		case e.GetLease() == a.Lease:
			return errNoChange
		case e.GetLease() != "":
			return errLost
		case !e.GetOnline():
			return errLost
		}
		e.Lease = a.Lease
		return nil
	})
	if errors.Is(err, errLost) || errors.Is(err, store.ErrNotFound) {
		return nil // another lease or coordinator got there first
	}
	if err != nil {
		return fmt.Errorf("claim exporter %s for lease %s: %w", a.Exporter, a.Lease, err)
	}
	done := false
	l, err := update(ctx, c, store.Leases, a.Lease, func(l *coordinatorv1.Lease) error {
		switch st := l.GetStatus(); {
		case st.GetState() == coordinatorv1.LeaseState_LEASE_STATE_READY && st.GetExporter() == a.Exporter:
			// Another coordinator finished this very assignment.
			done = true
			return errNoChange
		case st.GetState() != coordinatorv1.LeaseState_LEASE_STATE_PENDING:
			return errLost
		}
		end := now.Add(l.GetSpec().GetDuration().AsDuration())
		if t := l.GetSpec().GetEndTime(); t != nil {
			end = t.AsTime()
		}
		st := l.Status
		st.State = coordinatorv1.LeaseState_LEASE_STATE_READY
		st.Reason = coordinatorv1.LeaseReason_LEASE_REASON_ACQUIRED
		st.Message = "exporter " + a.Exporter + " assigned"
		st.Exporter = a.Exporter
		st.BeginTime = timestamp(now)
		st.EndTime = timestamp(end)
		st.Priority = a.Terms.Priority
		st.Preemptible = a.Terms.Preemptible
		st.TransitionTime = timestamp(now)
		return nil
	})
	if errors.Is(err, errLost) || errors.Is(err, store.ErrNotFound) {
		return c.releaseClaim(ctx, a.Exporter, a.Lease)
	}
	if err != nil {
		return fmt.Errorf("mark lease %s ready: %w", a.Lease, err)
	}
	if done {
		return nil
	}
	c.m.transition(l)
	c.m.waited.Observe(now.Sub(l.GetMetadata().GetCreateTime().AsTime()).Seconds())
	return nil
}

// statusOf returns l's status, giving it an empty one first if it has
// none: on Kubernetes a lease is created, then its status written, and
// another replica may act on it in between.
func statusOf(l *coordinatorv1.Lease) *coordinatorv1.LeaseStatus {
	if l.Status == nil {
		l.Status = &coordinatorv1.LeaseStatus{}
	}
	return l.Status
}

// errLost: the record is no longer as the plan saw it; skip the step.
var errLost = errors.New("precondition no longer holds")

// endLease ends a lease, then frees its exporter.
func (c *Coordinator) endLease(ctx context.Context, name string, reason coordinatorv1.LeaseReason, msg string) error {
	now := time.Now()
	l, err := update(ctx, c, store.Leases, name, func(l *coordinatorv1.Lease) error {
		st := statusOf(l)
		if st.GetState() == coordinatorv1.LeaseState_LEASE_STATE_ENDED {
			return errLost
		}
		st.State = coordinatorv1.LeaseState_LEASE_STATE_ENDED
		st.Reason = reason
		st.Message = msg
		if st.GetEndTime() == nil || now.Before(st.GetEndTime().AsTime()) {
			st.EndTime = timestamp(now)
		}
		st.TransitionTime = timestamp(now)
		return nil
	})
	if errors.Is(err, errLost) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("end lease %s: %w", name, err)
	}
	c.m.transition(l)
	if e := l.GetStatus().GetExporter(); e != "" {
		return c.releaseClaim(ctx, e, name)
	}
	return nil
}

// releaseClaim clears an exporter's claim if lease still holds it.
func (c *Coordinator) releaseClaim(ctx context.Context, exporter, lease string) error {
	_, err := update(ctx, c, store.Exporters, exporter, func(e *coordinatorv1.Exporter) error {
		if e.GetLease() != lease {
			return errNoChange
		}
		e.Lease = ""
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("free exporter %s from lease %s: %w", exporter, lease, err)
	}
	return nil
}

func (c *Coordinator) noticeLease(ctx context.Context, n scheduler.Notice) error {
	now := time.Now()
	l, err := update(ctx, c, store.Leases, n.Lease, func(l *coordinatorv1.Lease) error {
		st := l.Status
		if st.GetState() != coordinatorv1.LeaseState_LEASE_STATE_READY || st.GetPreemptedBy() != "" {
			return errLost
		}
		st.PreemptedBy = n.By
		if n.EndTime.Before(st.GetEndTime().AsTime()) {
			st.EndTime = timestamp(n.EndTime)
		}
		st.Reason = coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTION_NOTICE
		st.Message = fmt.Sprintf("preempted by lease %s; ends at %s", n.By, st.GetEndTime().AsTime().UTC().Format(time.RFC3339))
		st.TransitionTime = timestamp(now)
		return nil
	})
	if errors.Is(err, errLost) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("notify lease %s of preemption: %w", n.Lease, err)
	}
	c.m.transition(l)
	return nil
}

func (c *Coordinator) setPending(ctx context.Context, p scheduler.Pending) error {
	now := time.Now()
	l, err := update(ctx, c, store.Leases, p.Lease, func(l *coordinatorv1.Lease) error {
		st := l.Status
		if st.GetState() != coordinatorv1.LeaseState_LEASE_STATE_PENDING {
			return errLost
		}
		if st.GetReason() == p.Reason {
			return errNoChange
		}
		st.Reason, st.Message, st.TransitionTime = p.Reason, p.Message, timestamp(now)
		return nil
	})
	if errors.Is(err, errLost) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update pending lease %s: %w", p.Lease, err)
	}
	c.m.transition(l)
	return nil
}

func (c *Coordinator) deleteEnded(ctx context.Context, name string) error {
	l := c.cache.lease(name)
	if l == nil || l.GetStatus().GetState() != coordinatorv1.LeaseState_LEASE_STATE_ENDED {
		return nil
	}
	err := c.remove(ctx, l)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("delete ended lease %s: %w", name, err)
	}
	return nil
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// optTime is the time, or zero when unset.
func optTime(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func cloneObject(o store.Object) store.Object { return proto.Clone(o).(store.Object) }
