package kubestore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestRoundTrip writes a record of each kind with every field set and
// reads it back unchanged, through the API server's validation and the
// mirror alike.
func TestRoundTrip(t *testing.T) {
	needPlane(t)
	s := openStore(t, newNamespace(t))
	at := func(sec int) *timestamppb.Timestamp {
		return timestamppb.New(time.Unix(1_800_000_000+int64(sec), 123456789))
	}
	meta := func(name string) *coordinatorv1.ObjectMeta {
		return &coordinatorv1.ObjectMeta{Name: name, Labels: map[string]string{"board": "rpi4"}, CreateTime: at(0)}
	}
	records := []store.Object{
		&coordinatorv1.Exporter{Metadata: meta("e1"), PublicKey: make([]byte, 32), LastSeen: at(1), Lease: "l1", Online: true,
			SessionId: "s1", TokenId: "t1", Report: &jumpmeshv1.Report{Name: "e1", Labels: map[string]string{"a": "b"},
				Drivers: []*jumpmeshv1.DriverReport{{Uuid: "u1", Name: "power", Type: "virtual.power", Labels: map[string]string{"x": "y"},
					Description: "d", Interfaces: []*jumpmeshv1.InterfaceReport{{Name: "jumpmesh.drivers.power.v1.Power", Description: "p",
						Methods: []*jumpmeshv1.MethodReport{{Name: "On", Kind: jumpmeshv1.MethodKind_METHOD_KIND_UNARY, RequestType: "a.B", ResponseType: "c.D"}}}}},
					{Uuid: "u2", ParentUuid: "u1", Name: "child"}}}},
		&coordinatorv1.Client{Metadata: meta("c1"), TokenId: "t2"},
		&coordinatorv1.Admin{Metadata: meta("admin"), TokenId: "t3"},
		&coordinatorv1.Lease{Metadata: meta("l1"),
			Spec: &coordinatorv1.LeaseSpec{Client: "c1", Selector: "board=rpi4", Duration: durationpb.New(90 * time.Minute),
				BeginTime: at(2), EndTime: at(3), Tags: map[string]string{"ci": "42"}},
			Status: &coordinatorv1.LeaseStatus{State: ready, Reason: coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTION_NOTICE,
				Message: "m", Exporter: "e1", BeginTime: at(4), EndTime: at(5), Priority: 7, Preemptible: true, PreemptedBy: "l2",
				TransitionTime: at(6), QueuePosition: 3, Dials: []*coordinatorv1.LeaseDial{{ClientKeyThumbprint: "jkt", ExpireTime: at(8)}}}},
		&coordinatorv1.AccessPolicy{Metadata: meta("p1"), ExporterSelector: "board=rpi4", Rules: []*coordinatorv1.AccessRule{
			{ClientSelector: "team=a", Priority: 5, MaximumDuration: durationpb.New(time.Hour), Preemptible: true}, {}}},
		&coordinatorv1.SigningKey{Metadata: meta("20260101-abc"), Seed: []byte("0123456789abcdef0123456789abcdef"), RetireTime: at(7)},
	}
	for _, rec := range records {
		want := proto.Clone(rec).(store.Object)
		require.NoError(t, s.Create(t.Context(), rec))
		got, err := s.Get(t.Context(), store.KindOf(rec), rec.GetMetadata().GetName())
		require.NoError(t, err)
		want.GetMetadata().ResourceVersion = rec.GetMetadata().GetResourceVersion()
		require.True(t, proto.Equal(want, got), "%s:\nwant %v\ngot  %v", store.KindOf(rec), want, got)
		list, _, err := s.List(t.Context(), store.KindOf(rec))
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.True(t, proto.Equal(want, list[0]), "listed %s:\nwant %v\ngot  %v", store.KindOf(rec), want, list[0])
	}
}

// TestUpdateTime: updates that change a time, or leave it as it was,
// are written and read back, as the coordinator refreshes an exporter's
// last_seen.
func TestUpdateTime(t *testing.T) {
	needPlane(t)
	s := openStore(t, newNamespace(t))
	at := func(ns int64) *timestamppb.Timestamp { return timestamppb.New(time.Unix(1_800_000_000, ns)) }
	e := &coordinatorv1.Exporter{Metadata: &coordinatorv1.ObjectMeta{Name: "e1"}, LastSeen: at(1), Online: true}
	require.NoError(t, s.Create(t.Context(), e))
	for _, ns := range []int64{2, 2, 3} {
		e.LastSeen = at(ns)
		require.NoError(t, s.Update(t.Context(), e))
		got, err := s.Get(t.Context(), store.Exporters, "e1")
		require.NoError(t, err)
		require.True(t, proto.Equal(e.LastSeen, got.(*coordinatorv1.Exporter).LastSeen), "want %v\ngot  %v", e, got)
	}
}

// TestEveryLeaseEnumIsValid: each state and reason the coordinator may
// write passes the CRD's validation, so the CRD enums keep up with the
// proto.
func TestEveryLeaseEnumIsValid(t *testing.T) {
	needPlane(t)
	s := openStore(t, newNamespace(t))
	l := &coordinatorv1.Lease{Metadata: &coordinatorv1.ObjectMeta{Name: "l"}, Spec: &coordinatorv1.LeaseSpec{Client: "c"},
		Status: &coordinatorv1.LeaseStatus{}}
	require.NoError(t, s.Create(t.Context(), l))
	for _, e := range []protoreflect.Enum{coordinatorv1.LeaseState(0), coordinatorv1.LeaseReason(0)} {
		values := e.Descriptor().Values()
		for i := 1; i < values.Len(); i++ {
			n := values.Get(i).Number()
			switch e.(type) {
			case coordinatorv1.LeaseState:
				l.Status.State = coordinatorv1.LeaseState(n)
			case coordinatorv1.LeaseReason:
				l.Status.Reason = coordinatorv1.LeaseReason(n)
			}
			require.NoError(t, s.Update(t.Context(), l), "%s", values.Get(i).Name())
		}
	}
}

// TestAPIServerRestart: the store rides out an API server restart. Its
// watch resumes and brings changes made after it; writes work again.
func TestAPIServerRestart(t *testing.T) {
	needPlane(t)
	ns := newNamespace(t)
	s := openStore(t, ns)
	_, rev, err := s.List(t.Context(), store.Leases)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := s.Watch(ctx, rev)
	require.NoError(t, err)

	plane.StopAPIServer()
	restarted := false
	t.Cleanup(func() {
		if !restarted { // keep the API server for the other tests
			_ = plane.StartAPIServer(context.Background())
		}
	})
	err = s.Create(t.Context(), lease("during"))
	require.Error(t, err, "no API server, no write")
	require.NoError(t, plane.StartAPIServer(t.Context()))
	restarted = true

	other := openStore(t, ns)
	require.NoError(t, other.Create(t.Context(), lease("after")))
	require.Equal(t, "after", next(t, events).Object.GetMetadata().GetName(), "the watch resumes after the restart")
	var write error
	require.Eventually(t, func() bool {
		write = s.Create(t.Context(), lease("mine"))
		return write == nil || errors.Is(write, store.ErrExists)
	}, settle, 100*time.Millisecond, "writes after the restart: %v", write)
	list, _, err := s.List(t.Context(), store.Leases)
	require.NoError(t, err)
	require.Len(t, list, 2)
}

func lease(name string) *coordinatorv1.Lease {
	return &coordinatorv1.Lease{Metadata: &coordinatorv1.ObjectMeta{Name: name},
		Spec: &coordinatorv1.LeaseSpec{Client: "c1", Selector: "board=rpi4"}}
}

// TestKubectlColumns: kubectl shows exporters and leases with the columns
// a lab admin needs.
func TestKubectlColumns(t *testing.T) {
	needPlane(t)
	ns := newNamespace(t)
	r := startReplica(t, ns)
	lab(t, []*replica{r}, 1, 1)
	l, err := r.c.CreateLease(t.Context(), clientID(0), &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"})
	require.NoError(t, err)
	name := l.GetMetadata().GetName()
	require.NoError(t, waitReady(t.Context(), r.c, clientID(0), name))

	var out []byte
	require.Eventually(t, func() bool {
		out, err = plane.Kubectl(t.Context(), "get", "-n", ns, "exporters.jumpmesh.dev,leases.jumpmesh.dev")
		return err == nil && strings.Contains(string(out), "Ready")
	}, settle, 100*time.Millisecond, "kubectl: %v", err)
	t.Logf("kubectl get exporters.jumpmesh.dev,leases.jumpmesh.dev:\n%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 5, "a header and a row for each kind, a blank line between")
	require.Equal(t, []string{"NAME", "STATUS", "LEASE", "LAST", "SEEN", "AGE"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"exporter.jumpmesh.dev/e0", "Leased", name}, strings.Fields(lines[1])[:3])
	require.Equal(t, []string{"NAME", "STATE", "EXPORTER", "CLIENT", "EXPIRES", "AGE"}, strings.Fields(lines[3]))
	row := strings.Fields(lines[4])
	require.Equal(t, []string{"lease.jumpmesh.dev/" + name, "Ready", "e0", "c0"}, row[:4])
	expires, err := time.Parse(time.RFC3339Nano, row[4])
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(30*time.Minute), expires, time.Minute)
}

func TestLoadConfig(t *testing.T) {
	needPlane(t)
	t.Setenv("KUBECONFIG", plane.Kubeconfig)
	for _, tt := range []struct{ given, want string }{{"", "default"}, {"lab", "lab"}} {
		cfg, ns, err := LoadConfig(tt.given)
		require.NoError(t, err)
		require.Equal(t, plane.Host(), cfg.Host)
		require.Equal(t, tt.want, ns)
	}
}

// TestWatchFrom: a watch from 0 starts with every record; one from before
// the store's first list cannot be served.
func TestWatchFrom(t *testing.T) {
	needPlane(t)
	ns := newNamespace(t)
	first := openStore(t, ns)
	_, before, err := first.List(t.Context(), store.Leases)
	require.NoError(t, err)
	require.NoError(t, first.Create(t.Context(), lease("a")))
	require.NoError(t, first.Create(t.Context(), lease("b")))

	s := openStore(t, ns)
	_, err = s.Watch(t.Context(), before)
	require.ErrorIs(t, err, store.ErrCompacted)
	events, err := s.Watch(t.Context(), 0)
	require.NoError(t, err)
	for _, name := range []string{"a", "b"} {
		ev := next(t, events)
		require.Equal(t, store.Put, ev.Type)
		require.Equal(t, name, ev.Object.GetMetadata().GetName())
	}
	require.NoError(t, s.Delete(t.Context(), store.Leases, "a", 0))
	ev := next(t, events)
	require.Equal(t, store.Deleted, ev.Type)
	require.Equal(t, "a", ev.Object.GetMetadata().GetName())
}

func next(t *testing.T, events <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(settle):
		t.Fatal("no event")
		return store.Event{}
	}
}
