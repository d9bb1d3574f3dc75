package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/labels"
)

// sim is a lab driven by random events and the scheduler's plans, applied
// as the coordinator would.
type sim struct {
	t   *testing.T
	rng *rand.Rand
	now time.Time
	cfg Config
	in  Input
	seq int
}

var simSelectors = []string{"board=rpi4", "board=imx8", "board in (rpi4,imx8)", "board=rpi4,region=eu", "region!=eu"}

func newSim(t *testing.T, seed uint64) *sim {
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: t0,
		cfg: Config{ExporterGrace: time.Minute, PreemptionNotice: time.Duration(seed%2) * 30 * time.Second, History: time.Hour}}
	boards, regions := []string{"rpi4", "imx8"}, []string{"eu", "us"}
	for i := range 12 {
		s.in.Exporters = append(s.in.Exporters, Exporter{
			Name:   fmt.Sprintf("e%02d", i),
			Labels: labels.Set{"board": boards[i%2], "region": regions[(i/2)%2]},
			Online: true,
		})
	}
	s.in.Clients = map[string]labels.Set{"alice": {"team": "a"}, "bob": {"team": "b"}}
	s.in.Policies = []Policy{{Exporters: sel(t, "board=rpi4"), Rules: []Rule{
		{Clients: sel(t, "team=a"), Priority: 10},
		{Clients: sel(t, ""), Priority: 1, Preemptible: true},
	}}}
	return s
}

func (s *sim) lease(name string) *Lease {
	for i := range s.in.Leases {
		if s.in.Leases[i].Name == name {
			return &s.in.Leases[i]
		}
	}
	return nil
}

func (s *sim) exporter(name string) *Exporter {
	for i := range s.in.Exporters {
		if s.in.Exporters[i].Name == name {
			return &s.in.Exporters[i]
		}
	}
	return nil
}

// event makes one random thing happen: a new lease, a release, an exporter
// going away or coming back, or time passing.
func (s *sim) event(creating bool) {
	switch r := s.rng.IntN(10); {
	case r < 4 && creating:
		s.seq++
		client := []string{"alice", "bob"}[s.rng.IntN(2)]
		selector := simSelectors[s.rng.IntN(len(simSelectors))]
		prio := int32(0)
		if client == "alice" {
			prio = 10
		}
		s.in.Leases = append(s.in.Leases, Lease{
			Name: fmt.Sprintf("l%04d", s.seq), Client: client, Selector: sel(s.t, selector), Created: s.now,
			Duration: time.Duration(1+s.rng.IntN(20)) * time.Minute, State: pending, Priority: prio,
		})
	case r < 6:
		var held []*Lease
		for i := range s.in.Leases {
			if s.in.Leases[i].State == ready {
				held = append(held, &s.in.Leases[i])
			}
		}
		if len(held) > 0 {
			l := held[s.rng.IntN(len(held))]
			l.State, l.Reason, l.Transition = ended, coordinatorv1.LeaseReason_LEASE_REASON_RELEASED, s.now
			if e := s.exporter(l.Assigned); e.Lease == l.Name {
				e.Lease = ""
			}
		}
	case r < 7:
		e := &s.in.Exporters[s.rng.IntN(len(s.in.Exporters))]
		e.Online = !e.Online
		e.LastSeen = s.now
	default:
		s.now = s.now.Add(time.Duration(s.rng.IntN(90)) * time.Second)
	}
}

// usable says whether lease l may run on exporter e right now.
func (s *sim) usable(l *Lease, e *Exporter) bool {
	return e.Online && l.Selector.Matches(e.Labels) &&
		Evaluate(s.in.Policies, s.in.Clients[l.Client], e.Labels, l.Duration).Allowed
}

// check asserts what every plan must keep, against the state it was made
// from.
func (s *sim) check(p Plan) {
	t := s.t
	freed := map[string]bool{}
	for _, e := range p.Ends {
		if e.Exporter != "" {
			freed[e.Exporter] = true
		}
	}
	for _, r := range p.Releases {
		freed[r.Exporter] = true
	}
	usedE, usedL := map[string]bool{}, map[string]bool{}
	for _, a := range p.Assigns {
		require.False(t, usedE[a.Exporter], "exporter %s assigned twice", a.Exporter)
		require.False(t, usedL[a.Lease], "lease %s assigned twice", a.Lease)
		usedE[a.Exporter], usedL[a.Lease] = true, true
		e, l := s.exporter(a.Exporter), s.lease(a.Lease)
		require.Equal(t, pending, l.State)
		if a.Resume {
			require.Equal(t, l.Name, e.Lease)
			continue
		}
		require.True(t, e.Lease == "" || freed[e.Name], "%s given %s, which is held by %s", l.Name, e.Name, e.Lease)
		require.True(t, s.usable(l, e), "%s may not use %s", l.Name, e.Name)
	}
	// Work conserving and fair: a pending lease left waiting could use no
	// exporter that is free after the plan, nor one given to a lease
	// behind it in the queue.
	stillFree := map[string]bool{}
	for i := range s.in.Exporters {
		e := &s.in.Exporters[i]
		if (e.Lease == "" || freed[e.Name]) && !usedE[e.Name] {
			stillFree[e.Name] = true
		}
	}
	ending := map[string]bool{}
	for _, e := range p.Ends {
		ending[e.Lease] = true
	}
	waiting := map[string]bool{}
	for _, r := range p.Pending {
		waiting[r.Lease] = r.Reason == coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTING
	}
	for i := range s.in.Leases {
		b := &s.in.Leases[i]
		if b.State != pending || usedL[b.Name] || ending[b.Name] || waiting[b.Name] ||
			b.Reason == coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTING && !slices.ContainsFunc(p.Pending, func(r Pending) bool { return r.Lease == b.Name }) {
			continue
		}
		for name := range stillFree {
			require.False(t, s.usable(b, s.exporter(name)), "%s waits while %s is free", b.Name, name)
		}
		for _, a := range p.Assigns {
			if a.Resume || Less(b, s.lease(a.Lease)) >= 0 {
				continue
			}
			require.False(t, s.usable(b, s.exporter(a.Exporter)), "%s went to %s, behind %s in the queue", a.Exporter, a.Lease, b.Name)
		}
	}
}

// apply carries out the plan as the coordinator does.
func (s *sim) apply(p Plan) {
	for _, e := range p.Ends {
		l := s.lease(e.Lease)
		l.State, l.Reason, l.Transition = ended, e.Reason, s.now
		if e.Exporter != "" && s.exporter(e.Exporter).Lease == l.Name {
			s.exporter(e.Exporter).Lease = ""
		}
	}
	for _, n := range p.Notices {
		l := s.lease(n.Lease)
		l.PreemptedBy, l.EndTime = n.By, n.EndTime
	}
	for _, r := range p.Releases {
		s.exporter(r.Exporter).Lease = ""
	}
	for _, a := range p.Assigns {
		e, l := s.exporter(a.Exporter), s.lease(a.Lease)
		require.Empty(s.t, e.Lease, "exporter %s claimed twice", e.Name)
		e.Lease = l.Name
		l.State, l.Assigned, l.EndTime = ready, a.Exporter, a.EndTime
		l.Priority, l.Preemptible = a.Terms.Priority, a.Terms.Preemptible
	}
	for _, r := range p.Pending {
		s.lease(r.Lease).Reason = r.Reason
	}
	for _, name := range p.Deletes {
		s.in.Leases = slices.DeleteFunc(s.in.Leases, func(l Lease) bool { return l.Name == name })
	}
	held := map[string]string{}
	for _, l := range s.in.Leases {
		if l.State == ready {
			require.Empty(s.t, held[l.Assigned], "%s and %s both hold %s", held[l.Assigned], l.Name, l.Assigned)
			held[l.Assigned] = l.Name
			require.Equal(s.t, l.Name, s.exporter(l.Assigned).Lease)
		}
	}
}

func (s *sim) step(creating bool) {
	s.event(creating)
	p := Schedule(&s.in, s.now, s.cfg)
	s.check(p)
	s.apply(p)
}

// TestRandomLab runs random labs: plans must keep their invariants at every
// step and, once no new leases come, every lease must be served.
func TestRandomLab(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s := newSim(t, seed)
			for range 400 {
				s.step(true)
			}
			// Drain: bring every exporter back and let time and releases
			// run; nothing may starve.
			for i := range s.in.Exporters {
				s.in.Exporters[i].Online = true
			}
			for range 2000 {
				if !slices.ContainsFunc(s.in.Leases, func(l Lease) bool { return l.State == pending }) {
					return
				}
				s.step(false)
			}
			var left []string
			for _, l := range s.in.Leases {
				if l.State == pending {
					left = append(left, fmt.Sprintf("%s(%s %v)", l.Name, l.Selector, l.Reason))
				}
			}
			t.Fatalf("leases still pending after draining: %v", left)
		})
	}
}
