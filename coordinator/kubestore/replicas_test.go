package kubestore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	ready = coordinatorv1.LeaseState_LEASE_STATE_READY
	// settle bounds how long a test waits for the replicas to converge;
	// far above what they take, as the machine may be loaded.
	settle = 60 * time.Second
)

// replica is one coordinator process: its own store and its own
// scheduler, sharing the namespace with the others.
type replica struct {
	st   *Store
	c    *coordinator.Coordinator
	once sync.Once
}

func startReplica(t testing.TB, ns string) *replica {
	t.Helper()
	return startReplicaWith(t, ns, coordinator.Config{PreemptionNotice: -1})
}

func startReplicaWith(t testing.TB, ns string, cfg coordinator.Config) *replica {
	t.Helper()
	st, err := New(t.Context(), Options{Namespace: ns, RESTConfig: plane.RESTConfig(), Logger: quietLogger()})
	require.NoError(t, err)
	cfg.Store, cfg.Logger = st, quietLogger()
	c, err := coordinator.New(t.Context(), cfg)
	if err != nil {
		st.Close()
		require.NoError(t, err)
	}
	r := &replica{st: st, c: c}
	t.Cleanup(r.kill)
	return r
}

// kill stops the replica as a crash would: its scheduler stops wherever
// it is, writes in flight are cancelled.
func (r *replica) kill() {
	r.once.Do(func() {
		r.c.Close()
		r.st.Close()
	})
}

// online holds exporter name online on c, with heartbeats, until the test
// ends.
func online(t testing.TB, c *coordinator.Coordinator, name string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	tick := time.NewTicker(c.HeartbeatInterval())
	recv := func() error {
		select {
		case <-tick.C:
			return nil
		case <-ctx.Done():
			return io.EOF
		}
	}
	send := func(*coordinatorv1.StatusResponse) error { return nil }
	go func() {
		defer close(done)
		_ = c.ServeStatus(ctx, name, recv, send)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		tick.Stop()
	})
}

// lab makes exporters (online on the replica each is given to) and
// clients.
func lab(t testing.TB, replicas []*replica, exporters, clients int) {
	ctx := t.Context()
	for i := range exporters {
		name := fmt.Sprintf("e%d", i)
		_, _, err := replicas[0].c.CreateExporter(ctx, name, map[string]string{"board": []string{"rpi4", "imx8"}[i%2]})
		require.NoError(t, err)
	}
	for i := range clients {
		_, _, err := replicas[0].c.CreateClient(ctx, fmt.Sprintf("c%d", i), nil)
		require.NoError(t, err)
	}
	for i := range exporters {
		online(t, replicas[i%len(replicas)].c, fmt.Sprintf("e%d", i))
	}
	for _, r := range replicas {
		require.Eventually(t, func() bool {
			list, err := r.c.ListExporters("")
			if err != nil || len(list) != exporters {
				return false
			}
			for _, e := range list {
				if !e.GetOnline() {
					return false
				}
			}
			return true
		}, settle, 10*time.Millisecond)
	}
}

// recorder keeps every change in the namespace, from a store of its own.
type recorder struct {
	mu     sync.Mutex
	events []store.Event
	ready  map[string]bool // leases seen ready
	done   chan struct{}
	cancel context.CancelFunc
}

func record(t testing.TB, ns string) *recorder {
	st := openStore(t, ns)
	_, rev, err := st.List(t.Context(), store.Leases)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	events, err := st.Watch(ctx, rev)
	require.NoError(t, err)
	r := &recorder{ready: map[string]bool{}, done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		for ev := range events {
			r.mu.Lock()
			r.events = append(r.events, ev)
			if l, ok := ev.Object.(*coordinatorv1.Lease); ok && l.GetStatus().GetState() == ready {
				r.ready[l.GetMetadata().GetName()] = true
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *recorder) stop() {
	r.cancel()
	<-r.done
}

// check waits until the recorder has seen every lease of wantReady ready
// (its watch runs behind the replicas'), then replays the changes in
// revision order (etcd's commit order, across kinds) and fails at the
// first revision where an exporter serves two ready leases or a ready
// lease lacks its exporter's claim.
func (r *recorder) check(t testing.TB, wantReady []string) {
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, name := range wantReady {
			if !r.ready[name] {
				return false
			}
		}
		return true
	}, settle, 10*time.Millisecond, "the recorder never saw every lease ready")
	r.stop()
	events := slices.Clone(r.events)
	slices.SortStableFunc(events, func(a, b store.Event) int { return cmp.Compare(a.Revision, b.Revision) })
	claims := map[string]string{}  // exporter -> lease
	readyOn := map[string]string{} // lease -> exporter
	for _, ev := range events {
		name := ev.Object.GetMetadata().GetName()
		switch o := ev.Object.(type) {
		case *coordinatorv1.Exporter:
			claims[name] = o.GetLease()
			if ev.Type == store.Deleted {
				delete(claims, name)
			}
		case *coordinatorv1.Lease:
			delete(readyOn, name)
			if ev.Type == store.Put && o.GetStatus().GetState() == ready {
				readyOn[name] = o.GetStatus().GetExporter()
			}
		}
		holder := map[string]string{}
		for l, e := range readyOn {
			require.Empty(t, holder[e], "revision %d: leases %s and %s both ready on %s", ev.Revision, holder[e], l, e)
			holder[e] = l
			require.Equal(t, l, claims[e], "revision %d: lease %s ready on %s, whose claim is %q", ev.Revision, l, e, claims[e])
		}
	}
}

var errReady = errors.New("ready")

// waitReady waits until the lease is ready, as c sees it.
func waitReady(ctx context.Context, c *coordinator.Coordinator, who coordinator.Identity, name string) error {
	ctx, cancel := context.WithTimeout(ctx, settle)
	defer cancel()
	err := c.WatchLease(ctx, who, name, func(l *coordinatorv1.Lease) error {
		if l.GetStatus().GetState() == ready {
			return errReady
		}
		return nil
	})
	if errors.Is(err, errReady) {
		return nil
	}
	return fmt.Errorf("lease %s never became ready: %w", name, err)
}

func clientID(i int) coordinator.Identity {
	return coordinator.Identity{Kind: token.Client, Name: fmt.Sprintf("c%d", i)}
}

// TestRaceTwoReplicas has many clients race for few exporters through two
// coordinators on one API server. Each schedules from its own cache; only
// resourceVersion compare-and-swap keeps an exporter to one lease.
func TestRaceTwoReplicas(t *testing.T) {
	needPlane(t)
	const exporters, clients, rounds = 6, 12, 4
	ns := newNamespace(t)
	rec := record(t, ns)
	replicas := []*replica{startReplica(t, ns), startReplica(t, ns)}
	lab(t, replicas, exporters, clients)

	selectors := []string{"board=rpi4", "board=imx8", "board in (rpi4,imx8)"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var created []string
	for i := range clients {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		wg.Go(func() {
			for range rounds {
				c := replicas[rng.IntN(2)].c
				l, err := c.CreateLease(t.Context(), clientID(i), &coordinatorv1.CreateLeaseRequest{Selector: selectors[rng.IntN(len(selectors))]})
				if !assert.NoError(t, err) {
					return
				}
				name := l.GetMetadata().GetName()
				mu.Lock()
				created = append(created, name)
				mu.Unlock()
				if !assert.NoError(t, waitReady(t.Context(), c, clientID(i), name)) {
					return
				}
				_, err = replicas[rng.IntN(2)].c.DeleteLease(t.Context(), clientID(i), name)
				if !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	wg.Wait()
	require.Len(t, created, clients*rounds)
	rec.check(t, created)
}

// TestReplicaKilledMidScheduling kills one replica while it is assigning
// exporters; the other finishes the work, repairing half-made
// assignments, and no exporter is ever leased twice.
func TestReplicaKilledMidScheduling(t *testing.T) {
	needPlane(t)
	const exporters = 8
	ns := newNamespace(t)
	rec := record(t, ns)
	victim, survivor := startReplica(t, ns), startReplica(t, ns)
	lab(t, []*replica{survivor}, exporters, exporters)

	names := make([]string, exporters)
	var wg sync.WaitGroup
	for i := range exporters {
		wg.Go(func() {
			l, err := victim.c.CreateLease(t.Context(), clientID(i), &coordinatorv1.CreateLeaseRequest{Exporter: fmt.Sprintf("e%d", i)})
			if assert.NoError(t, err) {
				names[i] = l.GetMetadata().GetName()
			}
		})
	}
	wg.Wait()
	// The victim's scheduler was woken by each create and is now writing.
	victim.kill()

	for i, name := range names {
		require.NoError(t, waitReady(t.Context(), survivor.c, clientID(i), name))
	}
	rec.check(t, names)
}

// TestWatchWakesPendingLease: a lease waiting on one replica is served as
// soon as another replica frees the exporter. Nothing but the watch tells
// the waiting replica: its scheduler has no timer due for an hour.
func TestWatchWakesPendingLease(t *testing.T) {
	needPlane(t)
	ns := newNamespace(t)
	a, b := startReplica(t, ns), startReplica(t, ns)
	lab(t, []*replica{a}, 1, 2)

	first, err := a.c.CreateLease(t.Context(), clientID(0), &coordinatorv1.CreateLeaseRequest{Exporter: "e0"})
	require.NoError(t, err)
	require.NoError(t, waitReady(t.Context(), a.c, clientID(0), first.GetMetadata().GetName()))

	second, err := b.c.CreateLease(t.Context(), clientID(1), &coordinatorv1.CreateLeaseRequest{Exporter: "e0"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		l, err := b.c.GetLease(t.Context(), clientID(1), second.GetMetadata().GetName())
		return err == nil && l.GetStatus().GetReason() == coordinatorv1.LeaseReason_LEASE_REASON_ALL_BUSY
	}, settle, 10*time.Millisecond, "the second lease should wait for the busy exporter")

	_, err = a.c.DeleteLease(t.Context(), clientID(0), first.GetMetadata().GetName())
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, waitReady(t.Context(), b.c, clientID(1), second.GetMetadata().GetName()))
	t.Logf("replica b served the pending lease %v after replica a freed the exporter", time.Since(start))
}

// TestReplicaKeepsOthersExporterOnline: an exporter online on replica a
// stays online while replica b, started after it came online and never
// hearing from it, runs for many heartbeat windows: the store never
// records it offline.
func TestReplicaKeepsOthersExporterOnline(t *testing.T) {
	needPlane(t)
	const refreshes = 10 // over three windows of three heartbeats
	ns := newNamespace(t)
	cfg := coordinator.Config{HeartbeatInterval: 200 * time.Millisecond, PreemptionNotice: -1}
	a := startReplicaWith(t, ns, cfg)
	lab(t, []*replica{a}, 1, 0)
	rec := record(t, ns)
	b := startReplicaWith(t, ns, cfg)

	puts := func() []*coordinatorv1.Exporter {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		var out []*coordinatorv1.Exporter
		for _, ev := range rec.events {
			if e, ok := ev.Object.(*coordinatorv1.Exporter); ok && ev.Type == store.Put {
				out = append(out, e)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(puts()) >= refreshes }, settle, 10*time.Millisecond,
		"replica a should record e0 live every heartbeat interval")
	for _, e := range puts() {
		require.True(t, e.GetOnline(), "e0 recorded offline at version %d", e.GetMetadata().GetResourceVersion())
	}
	e, err := b.c.GetExporter("e0")
	require.NoError(t, err)
	require.True(t, e.GetOnline())
}
