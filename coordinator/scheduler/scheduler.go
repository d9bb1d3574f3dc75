// Package scheduler decides, from a snapshot of exporters, leases and
// policies at one instant, what should change: which pending lease gets
// which exporter, which leases end and why, which spot leases are
// preempted. It is a pure function; the coordinator carries out the plan
// with compare-and-swap writes, so a stale plan fails safely.
//
// The queue is fair: pending leases are served by priority, then first come
// first served, and each takes the first free exporter it may use. Since a
// lease's place only moves forward, every lease that some exporter can serve
// is eventually served.
package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Exporter is an exporter as the scheduler sees it.
type Exporter struct {
	Name   string
	Labels labels.Set
	Online bool
	// When it went offline (meaningful when !Online).
	LastSeen time.Time
	// The lease holding it; empty when free.
	Lease string
}

// Lease is a lease as the scheduler sees it.
type Lease struct {
	Name   string
	Client string
	// Selector picks exporters; nil when Exporter names one.
	Selector labels.Selector
	Exporter string
	Created  time.Time
	// How long it lasts once ready, also what policies' maxima are checked
	// against.
	Duration time.Duration
	// Requested window; zero when not given.
	Begin, End time.Time

	State  coordinatorv1.LeaseState
	Reason coordinatorv1.LeaseReason
	// Priority orders the queue while pending; once ready it is the terms'.
	Priority    int32
	Preemptible bool
	PreemptedBy string
	// Ready only: the exporter it holds and when it ends.
	Assigned string
	EndTime  time.Time
	// When it last changed state or reason.
	Transition time.Time
}

// Config holds the scheduler's time limits.
type Config struct {
	// A ready lease ends when its exporter stays offline this long.
	ExporterGrace time.Duration
	// A preempted spot lease runs this long after notice; zero ends it at
	// once.
	PreemptionNotice time.Duration
	// Ended leases are deleted after this long.
	History time.Duration
}

// Input is the snapshot the scheduler plans from. Exporters are tried in
// the order given.
type Input struct {
	Exporters []Exporter
	Leases    []Lease
	// Client labels by name; a client not listed has none.
	Clients  map[string]labels.Set
	Policies []Policy
}

// Plan is what should change. The coordinator applies Ends, Notices and
// Releases before Assigns: an assignment may use an exporter that an end in
// the same plan frees.
type Plan struct {
	Ends     []End
	Notices  []Notice
	Releases []Release
	Assigns  []Assign
	Pending  []Pending
	// Ended leases past their history.
	Deletes []string
	// When to plan again if nothing else changes; zero for never.
	Wake time.Time
	// Queue is the pending leases left waiting, in the order they will be
	// served.
	Queue []string
}

// End ends a lease.
type End struct {
	Lease    string
	Exporter string // the exporter it held, if any
	Reason   coordinatorv1.LeaseReason
	Message  string
}

// Notice tells a spot lease it is preempted and moves its end closer.
type Notice struct {
	Lease   string
	By      string
	EndTime time.Time
}

// Release clears an exporter's claim left by a lease that no longer holds
// it, as after a crash between two writes.
type Release struct {
	Exporter string
	Lease    string
}

// Assign gives an exporter to a pending lease. Resume is set when the
// exporter's claim already names the lease (a crash came between claiming
// and marking the lease ready).
type Assign struct {
	Lease    string
	Exporter string
	Terms    Terms
	Begin    time.Time
	EndTime  time.Time
	Resume   bool
}

// Pending records why a lease still waits.
type Pending struct {
	Lease   string
	Reason  coordinatorv1.LeaseReason
	Message string
}

// Less orders the queue: higher priority first, then older, then by name.
func Less(a, b *Lease) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// planner holds one run's working state.
type planner struct {
	in   *Input
	now  time.Time
	cfg  Config
	plan Plan

	exporters map[string]int // by name, index into in.Exporters
	leases    map[string]*Lease
	free      []bool          // per exporter: may be assigned in this plan
	holder    []*Lease        // per exporter: the ready lease on it
	noticed   map[string]bool // spot leases given notice in this plan
	memo      map[candidateKey]*candidates
}

// Schedule plans at time now.
func Schedule(in *Input, now time.Time, cfg Config) Plan {
	p := &planner{
		in:        in,
		now:       now,
		cfg:       cfg,
		exporters: make(map[string]int, len(in.Exporters)),
		leases:    make(map[string]*Lease, len(in.Leases)),
		free:      make([]bool, len(in.Exporters)),
		holder:    make([]*Lease, len(in.Exporters)),
		noticed:   map[string]bool{},
		memo:      map[candidateKey]*candidates{},
	}
	for i := range in.Exporters {
		p.exporters[in.Exporters[i].Name] = i
	}
	for i := range in.Leases {
		p.leases[in.Leases[i].Name] = &in.Leases[i]
	}
	resumed := p.checkClaims()
	p.checkReady()
	p.collect()
	p.serveQueue(resumed)
	return p.plan
}

func (p *planner) wake(t time.Time) {
	if p.plan.Wake.IsZero() || t.Before(p.plan.Wake) {
		p.plan.Wake = t
	}
}

// checkClaims repairs exporter claims that disagree with the leases and
// marks the free exporters. It returns the pending leases whose claim is
// already in place.
func (p *planner) checkClaims() map[string]bool {
	resumed := map[string]bool{}
	for i := range p.in.Exporters {
		e := &p.in.Exporters[i]
		if e.Lease == "" {
			p.free[i] = e.Online
			continue
		}
		l := p.leases[e.Lease]
		switch {
		case l == nil || l.State == coordinatorv1.LeaseState_LEASE_STATE_ENDED ||
			l.State == coordinatorv1.LeaseState_LEASE_STATE_READY && l.Assigned != e.Name:
			p.plan.Releases = append(p.plan.Releases, Release{Exporter: e.Name, Lease: e.Lease})
			p.free[i] = e.Online
		case l.State == coordinatorv1.LeaseState_LEASE_STATE_PENDING:
			resumed[l.Name] = true
			p.plan.Assigns = append(p.plan.Assigns, p.assign(l, i, p.terms(l, i), true))
		case l.State == coordinatorv1.LeaseState_LEASE_STATE_READY:
			p.holder[i] = l
		}
	}
	return resumed
}

// checkReady ends ready leases whose time is up or whose exporter is gone,
// and frees their exporters for this plan.
func (p *planner) checkReady() {
	for i := range p.in.Leases {
		l := &p.in.Leases[i]
		if l.State != coordinatorv1.LeaseState_LEASE_STATE_READY {
			continue
		}
		idx, ok := p.exporters[l.Assigned]
		if !ok {
			p.end(l, coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_DELETED,
				fmt.Sprintf("exporter %s was deleted", l.Assigned), -1)
			continue
		}
		e := &p.in.Exporters[idx]
		if e.Lease != l.Name {
			// A snapshot can show the lease before the claim that came
			// first (coordinators read their stores' changes at different
			// speeds); the claim is the truth, and claims are only cleared
			// after their lease ends.
			continue
		}
		lostAt := e.LastSeen.Add(p.cfg.ExporterGrace)
		switch {
		case !p.now.Before(l.EndTime) && l.PreemptedBy != "":
			p.end(l, coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTED,
				fmt.Sprintf("preempted by lease %s", l.PreemptedBy), idx)
		case !p.now.Before(l.EndTime):
			p.end(l, coordinatorv1.LeaseReason_LEASE_REASON_EXPIRED, "its end time came", idx)
		case !e.Online && !p.now.Before(lostAt):
			p.end(l, coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_LOST,
				fmt.Sprintf("exporter %s was offline for more than %v", e.Name, p.cfg.ExporterGrace), idx)
		default:
			p.wake(l.EndTime)
			if !e.Online {
				p.wake(lostAt)
			}
		}
	}
}

// end ends lease l; idx is its exporter's index, whose claim the end clears,
// or -1.
func (p *planner) end(l *Lease, reason coordinatorv1.LeaseReason, msg string, idx int) {
	e := ""
	if idx >= 0 {
		e = p.in.Exporters[idx].Name
		p.holder[idx] = nil
		p.free[idx] = p.in.Exporters[idx].Online
	}
	p.plan.Ends = append(p.plan.Ends, End{Lease: l.Name, Exporter: e, Reason: reason, Message: msg})
}

// collect deletes ended leases past their history.
func (p *planner) collect() {
	for i := range p.in.Leases {
		l := &p.in.Leases[i]
		if l.State != coordinatorv1.LeaseState_LEASE_STATE_ENDED {
			continue
		}
		gone := l.Transition.Add(p.cfg.History)
		if !p.now.Before(gone) {
			p.plan.Deletes = append(p.plan.Deletes, l.Name)
		} else {
			p.wake(gone)
		}
	}
}

// serveQueue gives free exporters to pending leases in queue order.
func (p *planner) serveQueue(resumed map[string]bool) {
	var queue []*Lease
	awaiting := map[string]bool{} // leases a notice is clearing an exporter for
	for i := range p.in.Leases {
		if l := &p.in.Leases[i]; l.State == coordinatorv1.LeaseState_LEASE_STATE_PENDING && !resumed[l.Name] {
			queue = append(queue, l)
		}
	}
	for _, h := range p.holder {
		if h != nil && h.PreemptedBy != "" {
			awaiting[h.PreemptedBy] = true
		}
	}
	slices.SortFunc(queue, Less)
	for _, l := range queue {
		if !p.serve(l, awaiting) {
			p.plan.Queue = append(p.plan.Queue, l.Name)
		}
	}
}

// serve finds lease l an exporter, or records why it waits. It reports
// whether l leaves the queue (assigned or ended).
func (p *planner) serve(l *Lease, awaiting map[string]bool) bool {
	if !l.End.IsZero() && !p.now.Before(l.End) {
		p.end(l, coordinatorv1.LeaseReason_LEASE_REASON_EXPIRED, "its end time came before an exporter was free", -1)
		return true
	}
	if !l.End.IsZero() {
		p.wake(l.End)
	}
	if !l.Begin.IsZero() && p.now.Before(l.Begin) {
		p.wake(l.Begin)
		p.pending(l, coordinatorv1.LeaseReason_LEASE_REASON_SCHEDULED,
			"waits for its begin time "+l.Begin.UTC().Format(time.RFC3339))
		return false
	}
	c := p.candidates(l)
	switch {
	case c.matched == 0:
		msg := "no exporter matches " + l.Selector.String()
		if l.Selector == nil {
			msg = fmt.Sprintf("exporter %s does not exist", l.Exporter)
		}
		p.pending(l, coordinatorv1.LeaseReason_LEASE_REASON_NO_MATCH, msg)
		return false
	case len(c.list) == 0:
		p.pending(l, coordinatorv1.LeaseReason_LEASE_REASON_NOT_ALLOWED,
			fmt.Sprintf("no access policy lets client %s use the %d matching exporter(s) for %v", l.Client, c.matched, l.Duration))
		return false
	}
	if awaiting[l.Name] {
		p.pending(l, coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTING, "waits for a preempted spot lease to end")
		return false
	}
	online := false
	for _, cand := range c.list {
		if p.free[cand.idx] {
			p.free[cand.idx] = false
			p.plan.Assigns = append(p.plan.Assigns, p.assign(l, cand.idx, cand.terms, false))
			return true
		}
		online = online || p.in.Exporters[cand.idx].Online
	}
	if handled, assigned := p.preempt(l, c); handled {
		return assigned
	}
	if !online {
		p.pending(l, coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_OFFLINE,
			fmt.Sprintf("the %d exporter(s) it may use are offline", len(c.list)))
		return false
	}
	p.pending(l, coordinatorv1.LeaseReason_LEASE_REASON_ALL_BUSY,
		fmt.Sprintf("the %d exporter(s) it may use are busy", len(c.list)))
	return false
}

// preempt finds a spot lease of lower priority on an exporter l may use
// and ends it (now, or after the notice). Of several, the lowest priority
// goes first. handled reports a preemption; assigned that l got the
// exporter at once.
func (p *planner) preempt(l *Lease, c *candidates) (handled, assigned bool) {
	var victim *Lease
	var at candidate
	for _, cand := range c.list {
		h := p.holder[cand.idx]
		if h == nil || !h.Preemptible || h.PreemptedBy != "" || p.noticed[h.Name] || h.Priority >= l.Priority ||
			!p.in.Exporters[cand.idx].Online {
			continue
		}
		if victim == nil || h.Priority < victim.Priority {
			victim, at = h, cand
		}
	}
	if victim == nil {
		return false, false
	}
	if p.cfg.PreemptionNotice <= 0 {
		p.end(victim, coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTED, fmt.Sprintf("preempted by lease %s", l.Name), at.idx)
		p.free[at.idx] = false
		p.plan.Assigns = append(p.plan.Assigns, p.assign(l, at.idx, at.terms, false))
		return true, true
	}
	p.noticed[victim.Name] = true
	end := p.now.Add(p.cfg.PreemptionNotice)
	if victim.EndTime.Before(end) {
		end = victim.EndTime
	}
	p.plan.Notices = append(p.plan.Notices, Notice{Lease: victim.Name, By: l.Name, EndTime: end})
	p.wake(end)
	p.pending(l, coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTING,
		fmt.Sprintf("preempting spot lease %s, which ends by %s", victim.Name, end.UTC().Format(time.RFC3339)))
	return true, false
}

func (p *planner) pending(l *Lease, reason coordinatorv1.LeaseReason, msg string) {
	if l.Reason == reason {
		return
	}
	p.plan.Pending = append(p.plan.Pending, Pending{Lease: l.Name, Reason: reason, Message: msg})
}

func (p *planner) assign(l *Lease, idx int, terms Terms, resume bool) Assign {
	end := p.now.Add(l.Duration)
	if !l.End.IsZero() {
		end = l.End
	}
	return Assign{Lease: l.Name, Exporter: p.in.Exporters[idx].Name, Terms: terms, Begin: p.now, EndTime: end, Resume: resume}
}

// terms are l's terms on exporter idx, for a resumed assignment.
func (p *planner) terms(l *Lease, idx int) Terms {
	acc := Evaluate(p.in.Policies, p.in.Clients[l.Client], p.in.Exporters[idx].Labels, l.Duration)
	return acc.Terms
}

type candidate struct {
	idx   int
	terms Terms
}

// candidates are the exporters a lease may use, in exporter order, with
// how many matched its selector before policies.
type candidates struct {
	matched int
	list    []candidate
}

// candidateKey groups leases that have the same candidates: most queues
// hold many leases for the same kind of board.
type candidateKey struct {
	selector string
	exporter string
	client   string
	duration time.Duration
}

func (p *planner) candidates(l *Lease) *candidates {
	key := candidateKey{exporter: l.Exporter, client: l.Client, duration: l.Duration}
	if l.Selector != nil {
		key.selector = l.Selector.String()
	}
	if c, ok := p.memo[key]; ok {
		return c
	}
	c := &candidates{}
	client := p.in.Clients[l.Client]
	consider := func(idx int) {
		c.matched++
		if acc := Evaluate(p.in.Policies, client, p.in.Exporters[idx].Labels, l.Duration); acc.Allowed {
			c.list = append(c.list, candidate{idx: idx, terms: acc.Terms})
		}
	}
	if l.Selector == nil {
		if idx, ok := p.exporters[l.Exporter]; ok {
			consider(idx)
		}
	} else {
		for i := range p.in.Exporters {
			if l.Selector.Matches(p.in.Exporters[i].Labels) {
				consider(i)
			}
		}
	}
	p.memo[key] = c
	return c
}
