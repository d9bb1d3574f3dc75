package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// invariantChecker replays the store's changes in commit order and checks,
// at every revision, that no exporter serves two leases and that every
// ready lease holds its exporter's claim. It relies on boltstore's watch
// being in commit order across kinds, more than store.Store promises.
type invariantChecker struct {
	exporters map[string]string // exporter -> claiming lease
	ready     map[string]string // ready lease -> exporter
	everReady map[string]bool
	released  map[string]bool
	err       error
}

func (c *invariantChecker) apply(ev store.Event) {
	if c.err != nil {
		return
	}
	name := ev.Object.GetMetadata().GetName()
	switch o := ev.Object.(type) {
	case *coordinatorv1.Exporter:
		if ev.Type == store.Deleted {
			delete(c.exporters, name)
			return
		}
		c.exporters[name] = o.GetLease()
	case *coordinatorv1.Lease:
		delete(c.ready, name)
		if ev.Type == store.Put && o.GetStatus().GetState() == ready {
			c.ready[name] = o.GetStatus().GetExporter()
			c.everReady[name] = true
		}
		if o.GetStatus().GetReason() == coordinatorv1.LeaseReason_LEASE_REASON_RELEASED {
			c.released[name] = true
		}
	}
	holders := map[string]string{}
	for l, e := range c.ready {
		if other, ok := holders[e]; ok {
			c.err = fmt.Errorf("revision %d: leases %s and %s are both ready on %s", ev.Revision, other, l, e)
			return
		}
		holders[e] = l
		if c.exporters[e] != l {
			c.err = fmt.Errorf("revision %d: lease %s is ready on %s, which records %q", ev.Revision, l, e, c.exporters[e])
			return
		}
	}
}

// TestRacingClientsAndCoordinators has many clients race for few exporters
// through two coordinators sharing one store. Each coordinator runs its own
// scheduler from its own cache, so only the store's compare-and-swap keeps
// an exporter to one lease.
func TestRacingClientsAndCoordinators(t *testing.T) {
	const (
		exporters = 8
		clients   = 24
		rounds    = 6
	)
	dir := t.TempDir()
	st := openStore(t, dir)
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	events, err := st.Watch(ctx, 0)
	require.NoError(t, err)
	check := &invariantChecker{exporters: map[string]string{}, ready: map[string]string{},
		everReady: map[string]bool{}, released: map[string]bool{}}
	checked := make(chan struct{})
	var seen atomic.Uint64 // the revision the checker got to
	go func() {
		defer close(checked)
		for ev := range events {
			check.apply(ev)
			seen.Store(ev.Revision)
		}
	}()

	var coords []*Coordinator
	for range 2 {
		cfg := testConfig
		cfg.Store, cfg.Logger = st, quietLogger()
		c, err := New(ctx, cfg)
		require.NoError(t, err)
		defer c.Close()
		coords = append(coords, c)
	}
	a := &harness{t: t, dir: dir, st: st, c: coords[0]}
	for i := range exporters {
		a.exporter(fmt.Sprintf("e%d", i), map[string]string{"board": []string{"rpi4", "imx8"}[i%2]})
	}
	for i := range clients {
		a.client(fmt.Sprintf("c%d", i), nil)
	}
	// Each exporter keeps its status stream with one of the coordinators.
	for i := range exporters {
		h := &harness{t: t, c: coords[i%2]}
		f := h.connect(fmt.Sprintf("e%d", i), true)
		defer f.drop(t)
	}
	require.Eventually(t, func() bool {
		list, err := coords[1].ListExporters("")
		if err != nil {
			return false
		}
		for _, e := range list {
			if !e.Online {
				return false
			}
		}
		return len(list) == exporters
	}, 10*time.Second, time.Millisecond)

	selectors := []string{"board=rpi4", "board=imx8", "board in (rpi4,imx8)"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var created []string
	for i := range clients {
		who := Identity{Kind: token.Client, Name: fmt.Sprintf("c%d", i)}
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		wg.Go(func() {
			for range rounds {
				c := coords[rng.IntN(2)]
				l, err := c.CreateLease(ctx, who, &coordinatorv1.CreateLeaseRequest{Selector: selectors[rng.IntN(len(selectors))]})
				if !assert.NoError(t, err) {
					return
				}
				name := l.GetMetadata().GetName()
				mu.Lock()
				created = append(created, name)
				mu.Unlock()
				wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
				err = c.WatchLease(wctx, who, name, func(l *coordinatorv1.Lease) error {
					if l.GetStatus().GetState() == ready {
						return errReady
					}
					return nil
				})
				wcancel()
				if !assert.ErrorIs(t, err, errReady, "lease %s never became ready", name) {
					return
				}
				// Release through either coordinator.
				_, err = coords[rng.IntN(2)].DeleteLease(ctx, who, name)
				if !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	wg.Wait()
	// The watch runs behind the writes; ending it early would drop the last.
	_, rev, err := st.List(ctx, store.Leases)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return seen.Load() >= rev }, 10*time.Second, time.Millisecond,
		"the checker never got to revision %d", rev)
	cancel()
	<-checked
	require.NoError(t, check.err)
	require.Len(t, created, clients*rounds)
	for _, name := range created {
		require.True(t, check.everReady[name], "lease %s was never ready", name)
		obj, err := st.Get(context.Background(), store.Leases, name)
		require.NoError(t, err)
		require.True(t, check.released[name], "lease %s was never released: %v", name, obj)
	}
}

// errReady stops a watch once the lease is ready.
var errReady = errors.New("ready")
