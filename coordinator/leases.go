package coordinator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/scheduler"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// maxTags bounds a lease's tags, as Jumpstarter does: they are for
// filtering, not storage.
const maxTags = 16

// CreateLease queues a new lease for the caller. It checks the request
// against the exporters and policies now, so a lease that could never be
// served is refused with the reason rather than left waiting.
func (c *Coordinator) CreateLease(ctx context.Context, who Identity, req *coordinatorv1.CreateLeaseRequest) (*coordinatorv1.Lease, error) {
	now := time.Now()
	spec := &coordinatorv1.LeaseSpec{
		Client:    who.Name,
		Selector:  strings.TrimSpace(req.GetSelector()),
		Exporter:  req.GetExporter(),
		BeginTime: req.GetBeginTime(),
		EndTime:   req.GetEndTime(),
		Tags:      req.GetTags(),
	}
	if (spec.Selector == "") == (spec.Exporter == "") {
		return nil, invalid("give a label selector (-l board=rpi4) or an exporter name (--exporter NAME), not both or neither")
	}
	if err := checkLabels("tag", spec.Tags); err != nil {
		return nil, err
	}
	if len(spec.Tags) > maxTags {
		return nil, invalid(fmt.Sprintf("a lease takes at most %d tags, got %d", maxTags, len(spec.Tags)))
	}
	d, err := leaseDuration(req, now, c.cfg.DefaultDuration)
	if err != nil {
		return nil, err
	}
	spec.Duration = durationpb.New(d)
	entry := newLeaseEntry(&coordinatorv1.Lease{Spec: spec})
	if spec.Selector != "" {
		if _, err := labels.Parse(spec.Selector); err != nil {
			return nil, invalid(fmt.Sprintf("selector %q does not parse: %v; write it as in kubectl, e.g. board=rpi4,env!=prod,region in (eu,us)", spec.Selector, err))
		}
	}
	prio, err := c.admit(who.Name, entry, d)
	if err != nil {
		return nil, err
	}
	name := req.GetName()
	if name != "" {
		if err := checkName("lease", name); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		n := name
		if n == "" {
			n = "lease-" + randomName()
		}
		l := &coordinatorv1.Lease{
			Metadata: newMeta(n, nil, now),
			Spec:     spec,
			Status: &coordinatorv1.LeaseStatus{
				State:          coordinatorv1.LeaseState_LEASE_STATE_PENDING,
				Reason:         coordinatorv1.LeaseReason_LEASE_REASON_QUEUED,
				Message:        "queued",
				Priority:       prio,
				TransitionTime: timestamp(now),
			},
		}
		err := c.create(ctx, l)
		if errors.Is(err, store.ErrExists) {
			if name != "" {
				return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("a lease named %s exists; pick another name or leave it out", name))
			}
			if attempt < maxAttempts {
				continue
			}
		}
		if err != nil {
			return nil, asConnect("create lease", err)
		}
		c.m.created.Inc()
		c.m.transition(l)
		return c.present(l), nil
	}
}

// leaseDuration works out how long a lease lasts from the request's
// duration, begin and end, checking they agree.
func leaseDuration(req *coordinatorv1.CreateLeaseRequest, now time.Time, def time.Duration) (time.Duration, error) {
	begin := now
	if t := req.GetBeginTime(); t != nil {
		begin = t.AsTime()
	}
	if req.GetDuration() != nil && req.GetDuration().AsDuration() <= 0 {
		return 0, invalid(fmt.Sprintf("duration must be positive, got %v", req.GetDuration().AsDuration()))
	}
	if req.GetEndTime() == nil {
		if req.GetDuration() == nil {
			return def, nil
		}
		return req.GetDuration().AsDuration(), nil
	}
	end := req.GetEndTime().AsTime()
	if !end.After(now) {
		return 0, invalid(fmt.Sprintf("end time %s is in the past", end.Local().Format(time.RFC3339)))
	}
	if !end.After(begin) {
		return 0, invalid("end time must come after begin time")
	}
	d := end.Sub(begin)
	if req.GetDuration() != nil && req.GetBeginTime() != nil && req.GetDuration().AsDuration() != d {
		return 0, invalid(fmt.Sprintf("begin, end and duration disagree: end - begin is %v, duration %v; give two of the three", d, req.GetDuration().AsDuration()))
	}
	return d, nil
}

// admit checks that client may lease some exporter the lease selects for
// d, and returns the priority it queues with: the best the policies give
// it on any of them.
func (c *Coordinator) admit(client string, e *leaseEntry, d time.Duration) (int32, error) {
	c.cache.mu.RLock()
	defer c.cache.mu.RUnlock()
	clientLabels := c.clientLabelsLocked(client)
	policies := make([]scheduler.Policy, 0, len(c.cache.policies))
	for _, p := range c.cache.policies {
		policies = append(policies, p.parsed)
	}
	var matched, allowed int
	var prio int32
	var longest time.Duration
	consider := func(ex *coordinatorv1.Exporter) {
		matched++
		acc := scheduler.Evaluate(policies, clientLabels, labels.Set(ex.GetMetadata().GetLabels()), d)
		if !acc.Allowed {
			longest = max(longest, acc.MaxDuration)
			return
		}
		if allowed == 0 || acc.Terms.Priority > prio {
			prio = acc.Terms.Priority
		}
		allowed++
	}
	target := e.obj.GetSpec().GetExporter()
	if target != "" {
		ex := c.cache.exporters[target]
		if ex == nil {
			return 0, connect.NewError(connect.CodeNotFound, fmt.Errorf("exporter %s does not exist; see `jmp get exporters`", target))
		}
		consider(ex)
	} else {
		for _, ex := range c.cache.exporters {
			if e.selector.Matches(labels.Set(ex.GetMetadata().GetLabels())) {
				consider(ex)
			}
		}
	}
	what := "exporter " + target
	if target == "" {
		what = fmt.Sprintf("the %d exporter(s) matching %s", matched, e.obj.GetSpec().GetSelector())
	}
	switch {
	case matched == 0:
		return 0, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("no exporter matches %s; see the labels with `jmp get exporters -o wide`", e.obj.GetSpec().GetSelector()))
	case allowed > 0:
		return prio, nil
	case longest > 0:
		return 0, invalid(fmt.Sprintf("duration %v is over the %v maximum the access policy allows client %s on %s; ask for %v or less",
			d, longest, client, what, longest))
	}
	return 0, connect.NewError(connect.CodePermissionDenied,
		fmt.Errorf("no access policy lets client %s lease %s; ask your lab admin", client, what))
}

func (c *Coordinator) clientLabelsLocked(name string) labels.Set {
	if cl := c.cache.clients[name]; cl != nil {
		return cl.GetMetadata().GetLabels()
	}
	return nil
}

// visibleLease returns the lease if who may see it: its client or an admin.
// Others get NotFound, so lease names leak nothing.
func (c *Coordinator) visibleLease(ctx context.Context, who Identity, name string) (*coordinatorv1.Lease, error) {
	l := c.cache.lease(name)
	if l == nil {
		// Another coordinator may have just created it; the store knows.
		// The copy stays out of the cache, which follows the store in
		// commit order.
		if obj, err := c.st.Get(ctx, store.Leases, name); err == nil {
			l = obj.(*coordinatorv1.Lease)
		}
	}
	if l == nil || !who.Admin() && l.GetSpec().GetClient() != who.Name {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("lease %s not found; see `jmp get leases`", name))
	}
	return l, nil
}

// GetLease returns one of the caller's leases.
func (c *Coordinator) GetLease(ctx context.Context, who Identity, name string) (*coordinatorv1.Lease, error) {
	l, err := c.visibleLease(ctx, who, name)
	if err != nil {
		return nil, err
	}
	return c.present(l), nil
}

// ListLeases returns the caller's leases (all leases for an admin), active
// ones unless all is set, oldest first.
func (c *Coordinator) ListLeases(who Identity, tagSelector string, all bool) ([]*coordinatorv1.Lease, error) {
	sel, err := labels.Parse(tagSelector)
	if err != nil {
		return nil, invalid(fmt.Sprintf("tag selector %q does not parse: %v", tagSelector, err))
	}
	c.cache.mu.RLock()
	var out []*coordinatorv1.Lease
	for _, e := range c.cache.leases {
		l := e.obj
		if !who.Admin() && l.GetSpec().GetClient() != who.Name ||
			!all && l.GetStatus().GetState() == coordinatorv1.LeaseState_LEASE_STATE_ENDED ||
			!sel.Matches(labels.Set(l.GetSpec().GetTags())) {
			continue
		}
		out = append(out, l)
	}
	c.cache.mu.RUnlock()
	slices.SortFunc(out, func(a, b *coordinatorv1.Lease) int {
		if c := a.GetMetadata().GetCreateTime().AsTime().Compare(b.GetMetadata().GetCreateTime().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName())
	})
	for i, l := range out {
		out[i] = c.present(l)
	}
	return out, nil
}

// present is a lease as callers see it: a pending one with its place in
// the queue as of the last scheduling pass, and no bookkeeping.
func (c *Coordinator) present(l *coordinatorv1.Lease) *coordinatorv1.Lease {
	var pos int32
	if l.GetStatus().GetState() == coordinatorv1.LeaseState_LEASE_STATE_PENDING {
		if positions := c.queue.Load(); positions != nil {
			pos = (*positions)[l.GetMetadata().GetName()]
		}
	}
	if pos == 0 && len(l.GetStatus().GetDials()) == 0 {
		return l
	}
	out := cloneObject(l).(*coordinatorv1.Lease)
	out.Status.Dials = nil
	if pos != 0 {
		out.Status.QueuePosition = pos
	}
	return out
}

// UpdateLease extends, resizes or transfers a lease.
func (c *Coordinator) UpdateLease(ctx context.Context, who Identity, req *coordinatorv1.UpdateLeaseRequest) (*coordinatorv1.Lease, error) {
	if _, err := c.visibleLease(ctx, who, req.GetName()); err != nil {
		return nil, err
	}
	now := time.Now()
	l, err := update(ctx, c, store.Leases, req.GetName(), func(l *coordinatorv1.Lease) error {
		if !who.Admin() && l.GetSpec().GetClient() != who.Name {
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("lease %s not found; see `jmp get leases`", req.GetName()))
		}
		st := l.GetStatus()
		if st.GetState() == coordinatorv1.LeaseState_LEASE_STATE_ENDED {
			return connect.NewError(connect.CodeFailedPrecondition,
				fmt.Errorf("lease %s has ended (%s); create a new one", req.GetName(), reasonText(st.GetReason())))
		}
		switch ch := req.GetChange().(type) {
		case *coordinatorv1.UpdateLeaseRequest_Extend:
			if ch.Extend.AsDuration() <= 0 {
				return invalid("--extend takes a positive duration, e.g. 30m")
			}
			total := l.GetSpec().GetDuration().AsDuration()
			if st.GetState() == coordinatorv1.LeaseState_LEASE_STATE_READY {
				total = st.GetEndTime().AsTime().Sub(st.GetBeginTime().AsTime())
			}
			return c.resize(l, total+ch.Extend.AsDuration(), now)
		case *coordinatorv1.UpdateLeaseRequest_Duration:
			if ch.Duration.AsDuration() <= 0 {
				return invalid("--duration takes a positive duration, e.g. 1h")
			}
			return c.resize(l, ch.Duration.AsDuration(), now)
		case *coordinatorv1.UpdateLeaseRequest_ToClient:
			return c.transfer(l, ch.ToClient)
		}
		return invalid("say what to change: --extend, --duration or --to-client")
	})
	if err != nil {
		return nil, asConnect("update lease", err)
	}
	c.m.transition(l)
	return c.present(l), nil
}

// resize sets a lease's total duration to d, checking the policies allow
// it and that a ready lease does not end in the past.
func (c *Coordinator) resize(l *coordinatorv1.Lease, d time.Duration, now time.Time) error {
	st := l.GetStatus()
	if st.GetState() == coordinatorv1.LeaseState_LEASE_STATE_READY {
		end := st.GetBeginTime().AsTime().Add(d)
		if !end.After(now) {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
				"a duration of %v would end lease %s at %s, which has passed; to end it now, run `jmp delete lease %s`",
				d, l.GetMetadata().GetName(), end.Local().Format(time.DateTime), l.GetMetadata().GetName()))
		}
		if err := c.allowedOn(l.GetSpec().GetClient(), st.GetExporter(), d); err != nil {
			return err
		}
		if st.GetPreemptedBy() != "" && end.After(st.GetEndTime().AsTime()) {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
				"lease %s is preempted by %s and cannot be extended", l.GetMetadata().GetName(), st.GetPreemptedBy()))
		}
		st.EndTime = timestamp(end)
		st.Message = fmt.Sprintf("duration set to %v; ends at %s", d, end.UTC().Format(time.RFC3339))
	} else {
		if _, err := c.admit(l.GetSpec().GetClient(), newLeaseEntry(l), d); err != nil {
			return err
		}
	}
	l.Spec.Duration = durationpb.New(d)
	if t := l.GetSpec().GetEndTime(); t != nil {
		begin := l.GetMetadata().GetCreateTime().AsTime()
		if b := l.GetSpec().GetBeginTime(); b != nil {
			begin = b.AsTime()
		}
		if st.GetState() == coordinatorv1.LeaseState_LEASE_STATE_READY {
			begin = st.GetBeginTime().AsTime()
		}
		l.Spec.EndTime = timestamp(begin.Add(d))
	}
	return nil
}

// transfer hands a lease to another client, which must be allowed to hold
// it.
func (c *Coordinator) transfer(l *coordinatorv1.Lease, to string) error {
	if err := checkName("client", to); err != nil {
		return err
	}
	if c.cache.get(store.Clients, to) == nil {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("client %s does not exist; see `jmp admin get clients`", to))
	}
	if l.GetSpec().GetClient() == to {
		return errNoChange
	}
	d := l.GetSpec().GetDuration().AsDuration()
	if l.GetStatus().GetState() == coordinatorv1.LeaseState_LEASE_STATE_READY {
		if err := c.allowedOn(to, l.GetStatus().GetExporter(), d); err != nil {
			return err
		}
	} else if _, err := c.admit(to, newLeaseEntry(l), d); err != nil {
		return err
	}
	st := statusOf(l)
	st.Message = fmt.Sprintf("transferred from client %s", l.GetSpec().GetClient())
	l.Spec.Client = to
	// The sessions were the old client's: the exporter gets no more tokens
	// for them.
	st.Dials = nil
	return nil
}

// allowedOn checks the policies let client hold exporter for d.
func (c *Coordinator) allowedOn(client, exporter string, d time.Duration) error {
	c.cache.mu.RLock()
	defer c.cache.mu.RUnlock()
	ex := c.cache.exporters[exporter]
	if ex == nil {
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("exporter %s was deleted", exporter))
	}
	policies := make([]scheduler.Policy, 0, len(c.cache.policies))
	for _, p := range c.cache.policies {
		policies = append(policies, p.parsed)
	}
	acc := scheduler.Evaluate(policies, c.clientLabelsLocked(client), labels.Set(ex.GetMetadata().GetLabels()), d)
	switch {
	case acc.Allowed:
		return nil
	case acc.MaxDuration > 0:
		return invalid(fmt.Sprintf("a total of %v is over the %v maximum the access policy allows client %s on exporter %s",
			d, acc.MaxDuration, client, exporter))
	}
	return connect.NewError(connect.CodePermissionDenied,
		fmt.Errorf("no access policy lets client %s lease exporter %s", client, exporter))
}

// DeleteLease ends a lease (reason released) and frees its exporter.
func (c *Coordinator) DeleteLease(ctx context.Context, who Identity, name string) (*coordinatorv1.Lease, error) {
	if _, err := c.visibleLease(ctx, who, name); err != nil {
		return nil, err
	}
	if err := c.endLease(ctx, name, coordinatorv1.LeaseReason_LEASE_REASON_RELEASED, "released by "+who.String()); err != nil {
		return nil, asConnect("release lease", err)
	}
	return c.present(c.cache.lease(name)), nil
}

// WatchLease calls send with the lease now and after each change, until it
// ends, ctx ends or send fails.
func (c *Coordinator) WatchLease(ctx context.Context, who Identity, name string, send func(*coordinatorv1.Lease) error) error {
	changed, stop := c.cache.subscribe(leaseKey(name))
	defer stop()
	var last uint64
	for {
		l, err := c.visibleLease(ctx, who, name)
		if err != nil {
			return err
		}
		if v := l.GetMetadata().GetResourceVersion(); v != last {
			last = v
			if err := send(c.present(l)); err != nil {
				return err
			}
		}
		if l.GetStatus().GetState() == coordinatorv1.LeaseState_LEASE_STATE_ENDED {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			// The caller's deadline or cancellation, or shutdown.
			return ctx.Err()
		}
	}
}

// randomName is 8 characters from a-z0-9 for generated names.
func randomName() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [8]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// checkName checks a resource name is a DNS label.
func checkName(what, name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return invalid(fmt.Sprintf("%s name %q is not valid: %s", what, name, errs[0]))
	}
	return nil
}

// checkLabels checks label (or tag) keys and values as Kubernetes does.
func checkLabels(what string, set map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return invalid(fmt.Sprintf("%s key %q is not valid: %s", what, k, errs[0]))
		}
		if errs := validation.IsValidLabelValue(set[k]); len(errs) > 0 {
			return invalid(fmt.Sprintf("%s %s=%q: value is not valid: %s", what, k, set[k], errs[0]))
		}
	}
	return nil
}

// reasonText is a reason for people: "all busy" for ALL_BUSY.
func reasonText(r coordinatorv1.LeaseReason) string {
	s := strings.TrimPrefix(r.String(), "LEASE_REASON_")
	return strings.ToLower(strings.ReplaceAll(s, "_", " "))
}
