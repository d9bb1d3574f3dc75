package scheduler

import (
	"testing"
	"time"

	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/labels"
)

const (
	pending = coordinatorv1.LeaseState_LEASE_STATE_PENDING
	ready   = coordinatorv1.LeaseState_LEASE_STATE_READY
	ended   = coordinatorv1.LeaseState_LEASE_STATE_ENDED
)

var t0 = time.Date(2026, 8, 21, 12, 0, 0, 0, time.UTC)

func sel(t testing.TB, s string) labels.Selector {
	t.Helper()
	parsed, err := labels.Parse(s)
	require.NoError(t, err)
	return parsed
}

func exp(name string, online bool, lease string, kv ...string) Exporter {
	set := labels.Set{}
	for i := 0; i+1 < len(kv); i += 2 {
		set[kv[i]] = kv[i+1]
	}
	return Exporter{Name: name, Labels: set, Online: online, Lease: lease, LastSeen: t0.Add(-time.Hour)}
}

// pend is a pending lease created at t0+age.
func pend(t testing.TB, name, selector string, prio int32, age time.Duration) Lease {
	return Lease{Name: name, Client: "alice", Selector: sel(t, selector), Created: t0.Add(age),
		Duration: 30 * time.Minute, State: pending, Priority: prio}
}

func readyOn(name, exporter string, end time.Time) Lease {
	return Lease{Name: name, Client: "bob", Exporter: exporter, Created: t0.Add(-time.Hour), Duration: time.Hour,
		State: ready, Assigned: exporter, EndTime: end, Reason: coordinatorv1.LeaseReason_LEASE_REASON_ACQUIRED}
}

func spot(l Lease, prio int32) Lease {
	l.Preemptible, l.Priority = true, prio
	return l
}

var cfg = Config{ExporterGrace: 2 * time.Minute, History: time.Hour}

type assignment struct{ lease, exporter string }

func assigns(p Plan) []assignment {
	var out []assignment
	for _, a := range p.Assigns {
		out = append(out, assignment{a.Lease, a.Exporter})
	}
	return out
}

func ends(p Plan) map[string]coordinatorv1.LeaseReason {
	out := map[string]coordinatorv1.LeaseReason{}
	for _, e := range p.Ends {
		out[e.Lease] = e.Reason
	}
	return out
}

func reasons(p Plan) map[string]coordinatorv1.LeaseReason {
	out := map[string]coordinatorv1.LeaseReason{}
	for _, e := range p.Pending {
		out[e.Lease] = e.Reason
	}
	return out
}

func TestSchedule(t *testing.T) {
	teamA := []Policy{{Name: "rpi", Exporters: sel(t, "board=rpi4"), Rules: []Rule{
		{Clients: sel(t, "team=a"), Priority: 10, MaxDuration: time.Hour},
		{Clients: sel(t, ""), Priority: 1, Preemptible: true, MaxDuration: time.Hour},
	}}}
	tests := []struct {
		name        string
		cfg         Config
		in          Input
		now         time.Time
		wantAssigns []assignment
		wantEnds    map[string]coordinatorv1.LeaseReason
		wantPending map[string]coordinatorv1.LeaseReason
		wantNotices []Notice
		wantRelease []Release
		wantDeletes []string
		wantWake    time.Time
		wantQueue   []string
	}{
		{
			name: "first come first served",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "", "board", "rpi4")},
				Leases:    []Lease{pend(t, "late", "board=rpi4", 0, time.Second), pend(t, "early", "board=rpi4", 0, 0)},
			},
			wantAssigns: []assignment{{"early", "e1"}},
			wantPending: map[string]coordinatorv1.LeaseReason{"late": coordinatorv1.LeaseReason_LEASE_REASON_ALL_BUSY},
			wantQueue:   []string{"late"},
		},
		{
			name: "higher priority first",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "", "board", "rpi4")},
				Leases:    []Lease{pend(t, "early", "board=rpi4", 0, 0), pend(t, "vip", "board=rpi4", 5, time.Second)},
			},
			wantAssigns: []assignment{{"vip", "e1"}},
			wantPending: map[string]coordinatorv1.LeaseReason{"early": coordinatorv1.LeaseReason_LEASE_REASON_ALL_BUSY},
			wantQueue:   []string{"early"},
		},
		{
			name: "a later lease takes an exporter the earlier one cannot use",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "", "board", "rpi4"), exp("e2", true, "", "board", "imx8")},
				Leases:    []Lease{pend(t, "early", "board=rpi5", 0, 0), pend(t, "late", "board in (imx8)", 0, time.Second)},
			},
			wantAssigns: []assignment{{"late", "e2"}},
			wantPending: map[string]coordinatorv1.LeaseReason{"early": coordinatorv1.LeaseReason_LEASE_REASON_NO_MATCH},
		},
		{
			name: "set-based selector with negation",
			in: Input{
				Exporters: []Exporter{
					exp("e1", true, "", "board", "rpi4", "env", "prod"),
					exp("e2", true, "", "board", "rpi4", "env", "lab", "region", "us"),
				},
				Leases: []Lease{pend(t, "l", "board=rpi4,env!=prod,region in (eu,us)", 0, 0)},
			},
			wantAssigns: []assignment{{"l", "e2"}},
		},
		{
			name: "not allowed by policy",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "", "board", "rpi4")},
				Leases:    []Lease{pend(t, "l", "board=rpi4", 0, 0)},
				Policies:  []Policy{{Exporters: sel(t, ""), Rules: []Rule{{Clients: sel(t, "team=b")}}}},
				Clients:   map[string]labels.Set{"alice": {"team": "a"}},
			},
			wantPending: map[string]coordinatorv1.LeaseReason{"l": coordinatorv1.LeaseReason_LEASE_REASON_NOT_ALLOWED},
		},
		{
			name: "policy terms apply on assignment",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "", "board", "rpi4")},
				Leases:    []Lease{pend(t, "l", "board=rpi4", 10, 0)},
				Policies:  teamA,
				Clients:   map[string]labels.Set{"alice": {"team": "a"}},
			},
			wantAssigns: []assignment{{"l", "e1"}},
		},
		{
			name: "named exporter offline",
			in: Input{
				Exporters: []Exporter{exp("e1", false, "", "board", "rpi4")},
				Leases:    []Lease{{Name: "l", Client: "alice", Exporter: "e1", State: pending, Duration: time.Minute}},
			},
			wantPending: map[string]coordinatorv1.LeaseReason{"l": coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_OFFLINE},
		},
		{
			name: "expiry frees the exporter for the queue in the same plan",
			now:  t0.Add(time.Minute),
			in: Input{
				Exporters: []Exporter{exp("e1", true, "old", "board", "rpi4")},
				Leases:    []Lease{readyOn("old", "e1", t0), pend(t, "next", "board=rpi4", 0, 0)},
			},
			wantEnds:    map[string]coordinatorv1.LeaseReason{"old": coordinatorv1.LeaseReason_LEASE_REASON_EXPIRED},
			wantAssigns: []assignment{{"next", "e1"}},
		},
		{
			name: "exporter offline within the grace period keeps the lease",
			now:  t0,
			in: Input{
				Exporters: []Exporter{{Name: "e1", Lease: "l", LastSeen: t0.Add(-time.Minute)}},
				Leases:    []Lease{readyOn("l", "e1", t0.Add(time.Hour))},
			},
			wantWake: t0.Add(time.Minute),
		},
		{
			name: "exporter lost past the grace period",
			now:  t0,
			in: Input{
				Exporters: []Exporter{{Name: "e1", Lease: "l", LastSeen: t0.Add(-3 * time.Minute)}},
				Leases:    []Lease{readyOn("l", "e1", t0.Add(time.Hour))},
			},
			wantEnds: map[string]coordinatorv1.LeaseReason{"l": coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_LOST},
		},
		{
			name: "exporter deleted",
			in: Input{
				Leases: []Lease{readyOn("l", "gone", t0.Add(time.Hour))},
			},
			wantEnds: map[string]coordinatorv1.LeaseReason{"l": coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_DELETED},
		},
		{
			name: "spot lease preempted at once without notice",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "spot", "board", "rpi4")},
				Leases:    []Lease{spot(readyOn("spot", "e1", t0.Add(time.Hour)), 1), pend(t, "vip", "board=rpi4", 10, 0)},
			},
			wantEnds:    map[string]coordinatorv1.LeaseReason{"spot": coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTED},
			wantAssigns: []assignment{{"vip", "e1"}},
		},
		{
			name: "spot lease given notice",
			cfg:  Config{PreemptionNotice: time.Minute, History: time.Hour},
			in: Input{
				Exporters: []Exporter{exp("e1", true, "spot", "board", "rpi4")},
				Leases:    []Lease{spot(readyOn("spot", "e1", t0.Add(time.Hour)), 1), pend(t, "vip", "board=rpi4", 10, 0)},
			},
			wantNotices: []Notice{{Lease: "spot", By: "vip", EndTime: t0.Add(time.Minute)}},
			wantPending: map[string]coordinatorv1.LeaseReason{"vip": coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTING},
			wantWake:    t0.Add(time.Minute),
		},
		{
			name: "preempted spot lease ends at its notice",
			cfg:  Config{PreemptionNotice: time.Minute, History: time.Hour},
			now:  t0.Add(time.Minute),
			in: Input{
				Exporters: []Exporter{exp("e1", true, "spot", "board", "rpi4")},
				Leases: []Lease{func() Lease {
					l := spot(readyOn("spot", "e1", t0.Add(time.Minute)), 1)
					l.PreemptedBy = "vip"
					return l
				}(), pend(t, "vip", "board=rpi4", 10, 0)},
			},
			wantEnds:    map[string]coordinatorv1.LeaseReason{"spot": coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTED},
			wantAssigns: []assignment{{"vip", "e1"}},
		},
		{
			name: "equal priority does not preempt",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "spot", "board", "rpi4")},
				Leases:    []Lease{spot(readyOn("spot", "e1", t0.Add(time.Hour)), 10), pend(t, "l", "board=rpi4", 10, 0)},
			},
			wantPending: map[string]coordinatorv1.LeaseReason{"l": coordinatorv1.LeaseReason_LEASE_REASON_ALL_BUSY},
			wantWake:    t0.Add(time.Hour),
		},
		{
			name: "non-spot leases are never preempted",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "held", "board", "rpi4")},
				Leases:    []Lease{readyOn("held", "e1", t0.Add(time.Hour)), pend(t, "vip", "board=rpi4", 100, 0)},
			},
			wantPending: map[string]coordinatorv1.LeaseReason{"vip": coordinatorv1.LeaseReason_LEASE_REASON_ALL_BUSY},
			wantWake:    t0.Add(time.Hour),
		},
		{
			name: "begin time in the future",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "", "board", "rpi4")},
				Leases: []Lease{func() Lease {
					l := pend(t, "l", "board=rpi4", 0, 0)
					l.Begin = t0.Add(time.Hour)
					return l
				}()},
			},
			wantPending: map[string]coordinatorv1.LeaseReason{"l": coordinatorv1.LeaseReason_LEASE_REASON_SCHEDULED},
			wantWake:    t0.Add(time.Hour),
		},
		{
			name: "pending past its fixed end",
			now:  t0.Add(time.Hour),
			in: Input{
				Leases: []Lease{func() Lease {
					l := pend(t, "l", "board=rpi4", 0, 0)
					l.End = t0.Add(time.Minute)
					return l
				}()},
			},
			wantEnds: map[string]coordinatorv1.LeaseReason{"l": coordinatorv1.LeaseReason_LEASE_REASON_EXPIRED},
		},
		{
			name: "stale claim released, half-done assignment resumed",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "gone", "board", "rpi4"), exp("e2", true, "half", "board", "rpi4")},
				Leases:    []Lease{pend(t, "half", "board=rpi4", 0, 0)},
			},
			wantRelease: []Release{{Exporter: "e1", Lease: "gone"}},
			wantAssigns: []assignment{{"half", "e2"}},
		},
		{
			name: "ended leases deleted after their history",
			now:  t0.Add(2 * time.Hour),
			in: Input{
				Leases: []Lease{
					{Name: "old", State: ended, Transition: t0},
					{Name: "recent", State: ended, Transition: t0.Add(90 * time.Minute)},
				},
			},
			wantDeletes: []string{"old"},
			wantWake:    t0.Add(150 * time.Minute),
		},
		{
			name: "unchanged reason writes nothing",
			in: Input{
				Exporters: []Exporter{exp("e1", true, "", "board", "rpi4")},
				Leases: []Lease{func() Lease {
					l := pend(t, "l", "board=rpi5", 0, 0)
					l.Reason = coordinatorv1.LeaseReason_LEASE_REASON_NO_MATCH
					return l
				}()},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			if tt.cfg != (Config{}) {
				c = tt.cfg
			}
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			p := Schedule(&tt.in, now, c)
			require.Equal(t, tt.wantAssigns, assigns(p), "assigns")
			if tt.wantEnds == nil {
				tt.wantEnds = map[string]coordinatorv1.LeaseReason{}
			}
			require.Equal(t, tt.wantEnds, ends(p), "ends")
			if tt.wantPending == nil {
				tt.wantPending = map[string]coordinatorv1.LeaseReason{}
			}
			require.Equal(t, tt.wantPending, reasons(p), "pending reasons")
			require.Equal(t, tt.wantNotices, p.Notices, "notices")
			require.Equal(t, tt.wantRelease, p.Releases, "releases")
			require.Equal(t, tt.wantDeletes, p.Deletes, "deletes")
			if !tt.wantWake.IsZero() {
				require.Equal(t, tt.wantWake, p.Wake, "wake")
			}
			if tt.wantQueue != nil {
				require.Equal(t, tt.wantQueue, p.Queue, "queue")
			}
		})
	}
}

func TestAssignTimes(t *testing.T) {
	fixed := pend(t, "fixed", "", 0, 0)
	fixed.End = t0.Add(10 * time.Minute)
	in := Input{
		Exporters: []Exporter{exp("e1", true, ""), exp("e2", true, "")},
		Leases:    []Lease{pend(t, "rel", "", 0, 0), fixed},
	}
	p := Schedule(&in, t0, cfg)
	require.Len(t, p.Assigns, 2)
	byLease := map[string]Assign{}
	for _, a := range p.Assigns {
		byLease[a.Lease] = a
	}
	require.Equal(t, t0.Add(30*time.Minute), byLease["rel"].EndTime, "a duration runs from the assignment")
	require.Equal(t, t0.Add(10*time.Minute), byLease["fixed"].EndTime, "an end time is kept")
	require.Equal(t, t0, byLease["rel"].Begin)
}

func TestEvaluate(t *testing.T) {
	policies := []Policy{{Exporters: sel(t, "board=rpi4"), Rules: []Rule{
		{Clients: sel(t, "team=a"), Priority: 10, MaxDuration: time.Hour},
		{Clients: sel(t, "team=a"), Priority: 20, MaxDuration: 10 * time.Minute},
		{Clients: sel(t, ""), Priority: 1, Preemptible: true},
	}}}
	tests := []struct {
		name     string
		client   labels.Set
		exporter labels.Set
		d        time.Duration
		want     Access
	}{
		{"ungoverned exporter is open", labels.Set{}, labels.Set{"board": "imx8"}, 100 * time.Hour, Access{Allowed: true}},
		{"highest priority that allows the duration", labels.Set{"team": "a"}, labels.Set{"board": "rpi4"}, 5 * time.Minute,
			Access{Allowed: true, Governed: true, Terms: Terms{Priority: 20}}},
		{"longer duration falls to the next rule", labels.Set{"team": "a"}, labels.Set{"board": "rpi4"}, 30 * time.Minute,
			Access{Allowed: true, Governed: true, Terms: Terms{Priority: 10}}},
		{"others get spot access", labels.Set{"team": "b"}, labels.Set{"board": "rpi4"}, 30 * time.Minute,
			Access{Allowed: true, Governed: true, Terms: Terms{Priority: 1, Preemptible: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Evaluate(policies, tt.client, tt.exporter, tt.d))
		})
	}
	strict := []Policy{{Exporters: sel(t, ""), Rules: []Rule{{Clients: sel(t, "team=a"), MaxDuration: time.Hour}}}}
	acc := Evaluate(strict, labels.Set{"team": "a"}, labels.Set{}, 2*time.Hour)
	require.Equal(t, Access{Governed: true, MaxDuration: time.Hour}, acc, "denied for its duration, with the maximum")
	acc = Evaluate(strict, labels.Set{"team": "b"}, labels.Set{}, time.Minute)
	require.Equal(t, Access{Governed: true}, acc, "denied outright")
}
