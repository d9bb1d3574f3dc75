// Package storetest checks that a store.Store keeps the contract the
// coordinator relies on. Each implementation runs Run from its own tests.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Run runs the conformance tests. open returns a new, empty store; the
// tests close it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateGetList", testCreateGetList},
		{"Preconditions", testPreconditions},
		{"OneWriterWinsEachVersion", testOneWriterWins},
		{"NoLostUpdates", testNoLostUpdates},
		{"WatchOrderAndResume", testWatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			tt.fn(t, s)
		})
	}
}

func lease(name string) *coordinatorv1.Lease {
	return &coordinatorv1.Lease{
		Metadata: &coordinatorv1.ObjectMeta{Name: name},
		Spec:     &coordinatorv1.LeaseSpec{Client: "c1", Selector: "board=rpi4"},
	}
}

func testCreateGetList(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := lease("a"), lease("b")
	require.NoError(t, s.Create(ctx, a))
	require.NoError(t, s.Create(ctx, b))
	require.NotZero(t, a.Metadata.ResourceVersion)
	require.Greater(t, b.Metadata.ResourceVersion, a.Metadata.ResourceVersion, "versions grow with every write")

	got, err := s.Get(ctx, store.Leases, "a")
	require.NoError(t, err)
	require.Equal(t, "board=rpi4", got.(*coordinatorv1.Lease).Spec.Selector)
	require.Equal(t, a.Metadata.ResourceVersion, got.GetMetadata().ResourceVersion)

	// A copy: changing it changes nothing stored.
	got.(*coordinatorv1.Lease).Spec.Selector = "changed"
	again, err := s.Get(ctx, store.Leases, "a")
	require.NoError(t, err)
	require.Equal(t, "board=rpi4", again.(*coordinatorv1.Lease).Spec.Selector)

	list, rev, err := s.List(ctx, store.Leases)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.GreaterOrEqual(t, rev, b.Metadata.ResourceVersion)

	other, _, err := s.List(ctx, store.Exporters)
	require.NoError(t, err)
	require.Empty(t, other, "kinds are kept apart")

	_, err = s.Get(ctx, store.Leases, "missing")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testPreconditions(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := lease("a")
	require.NoError(t, s.Create(ctx, a))
	require.ErrorIs(t, s.Create(ctx, lease("a")), store.ErrExists)

	stale := a.Metadata.ResourceVersion
	a.Spec.Selector = "board=rpi5"
	require.NoError(t, s.Update(ctx, a))
	require.Greater(t, a.Metadata.ResourceVersion, stale)

	old := lease("a")
	old.Metadata.ResourceVersion = stale
	require.ErrorIs(t, s.Update(ctx, old), store.ErrConflict)
	unread := lease("a")
	require.ErrorIs(t, s.Update(ctx, unread), store.ErrConflict, "an update must name the version it read")
	require.ErrorIs(t, s.Update(ctx, lease("missing")), store.ErrNotFound)

	require.ErrorIs(t, s.Delete(ctx, store.Leases, "a", stale), store.ErrConflict)
	require.NoError(t, s.Delete(ctx, store.Leases, "a", a.Metadata.ResourceVersion))
	require.ErrorIs(t, s.Delete(ctx, store.Leases, "a", 0), store.ErrNotFound)

	b := lease("b")
	require.NoError(t, s.Create(ctx, b))
	require.NoError(t, s.Delete(ctx, store.Leases, "b", 0), "version 0 deletes whatever is there")
}

// testOneWriterWins races many writers holding the same version: the store,
// not any lock of theirs, lets exactly one through.
func testOneWriterWins(t *testing.T, s store.Store) {
	ctx := t.Context()
	e := &coordinatorv1.Exporter{Metadata: &coordinatorv1.ObjectMeta{Name: "e1"}}
	require.NoError(t, s.Create(ctx, e))
	const writers = 32
	for round := range 5 {
		current, err := s.Get(ctx, store.Exporters, "e1")
		require.NoError(t, err)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				mine := &coordinatorv1.Exporter{
					Metadata: &coordinatorv1.ObjectMeta{Name: "e1", ResourceVersion: current.GetMetadata().ResourceVersion},
					Lease:    fmt.Sprintf("lease-%d-%d", round, i),
				}
				err := s.Update(ctx, mine)
				if err == nil {
					wins.Add(1)
					return
				}
				assert.ErrorIs(t, err, store.ErrConflict)
			})
		}
		wg.Wait()
		require.Equal(t, int32(1), wins.Load(), "round %d", round)
	}
}

// testNoLostUpdates has many writers each add one to a counter with
// read-modify-write loops; the store must not lose any.
func testNoLostUpdates(t *testing.T, s store.Store) {
	ctx := t.Context()
	p := &coordinatorv1.AccessPolicy{Metadata: &coordinatorv1.ObjectMeta{Name: "p"}}
	require.NoError(t, s.Create(ctx, p))
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				for {
					obj, err := s.Get(ctx, store.Policies, "p")
					if !assert.NoError(t, err) {
						return
					}
					pol := obj.(*coordinatorv1.AccessPolicy)
					pol.Rules = append(pol.Rules, &coordinatorv1.AccessRule{})
					err = s.Update(ctx, pol)
					if err == nil {
						break
					}
					if !assert.ErrorIs(t, err, store.ErrConflict) {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	obj, err := s.Get(ctx, store.Policies, "p")
	require.NoError(t, err)
	require.Len(t, obj.(*coordinatorv1.AccessPolicy).Rules, writers*each)
}

func testWatch(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, rev, err := s.List(ctx, store.Leases)
	require.NoError(t, err)

	a := lease("a")
	require.NoError(t, s.Create(ctx, a))
	// Started after the first write, from a revision before it: it still
	// sees it.
	events, err := s.Watch(ctx, rev)
	require.NoError(t, err)
	a.Spec.Exporter = "e1"
	require.NoError(t, s.Update(ctx, a))
	require.NoError(t, s.Delete(ctx, store.Leases, "a", a.Metadata.ResourceVersion))

	want := []struct {
		typ      store.EventType
		exporter string
	}{{store.Put, ""}, {store.Put, "e1"}, {store.Deleted, "e1"}}
	var last uint64
	for i, w := range want {
		select {
		case ev := <-events:
			require.Equal(t, w.typ, ev.Type, "event %d", i)
			require.Equal(t, store.Leases, ev.Kind)
			require.Equal(t, "a", ev.Object.GetMetadata().GetName())
			require.Equal(t, w.exporter, ev.Object.(*coordinatorv1.Lease).Spec.Exporter)
			require.Greater(t, ev.Revision, last, "events come in commit order")
			last = ev.Revision
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not come", i)
		}
	}
	cancel()
	for range events {
		// Drain until the store closes the channel for the ended watch.
	}
}
