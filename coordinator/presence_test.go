package coordinator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
)

// crashingStore is a coordinator's handle on a store it shares with
// others. Once crashed, every write fails, as a dead process writes
// nothing; the others go on with the store.
type crashingStore struct {
	store.Store
	crashed atomic.Bool
}

var errCrashed = errors.New("this coordinator crashed")

func (s *crashingStore) Create(ctx context.Context, obj store.Object) error {
	if s.crashed.Load() {
		return errCrashed
	}
	return s.Store.Create(ctx, obj)
}

func (s *crashingStore) Update(ctx context.Context, obj store.Object) error {
	if s.crashed.Load() {
		return errCrashed
	}
	return s.Store.Update(ctx, obj)
}

func (s *crashingStore) Delete(ctx context.Context, kind store.Kind, name string, version uint64) error {
	if s.crashed.Load() {
		return errCrashed
	}
	return s.Store.Delete(ctx, kind, name, version)
}

// exporterLog records every version of one exporter the store commits.
type exporterLog struct {
	mu       sync.Mutex
	versions []*coordinatorv1.Exporter
}

func (l *exporterLog) follow(events <-chan store.Event, name string) {
	for ev := range events {
		if e, ok := ev.Object.(*coordinatorv1.Exporter); ok && ev.Type == store.Put && e.GetMetadata().GetName() == name {
			l.mu.Lock()
			l.versions = append(l.versions, e)
			l.mu.Unlock()
		}
	}
}

// since returns the versions committed after the first n.
func (l *exporterLog) since(n int) []*coordinatorv1.Exporter {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*coordinatorv1.Exporter(nil), l.versions[n:]...)
}

func (l *exporterLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.versions)
}

// TestReplicasKeepExporterOnline has two coordinators share one store, the
// exporter's status stream on A. B, started after the exporter came online
// and never hearing from it, must not take it offline; A records that it
// lives at most once per heartbeat interval. When A dies without a word,
// B takes the exporter offline one window after A last vouched for it,
// and its lease ends after the grace period.
func TestReplicasKeepExporterOnline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st := openStore(t, t.TempDir())
		defer st.Close()
		shared := &crashingStore{Store: st}
		cfg := testConfig
		cfg.Store, cfg.Logger = shared, quietLogger()
		ca, err := New(ctx, cfg)
		require.NoError(t, err)
		defer ca.Close()
		a := &harness{t: t, st: shared, c: ca}
		alice := a.client("alice", nil)
		a.exporter("e1", rpi4)

		_, rev, err := st.List(ctx, store.Exporters)
		require.NoError(t, err)
		events, err := st.Watch(ctx, rev)
		require.NoError(t, err)
		log := &exporterLog{}
		followed := make(chan struct{})
		go func() {
			defer close(followed)
			log.follow(events, "e1")
		}()
		defer func() {
			cancel()
			<-followed
		}()

		f := a.connect("e1", true)
		defer f.cancel()
		synctest.Wait()
		cfg.Store = st
		cb, err := New(ctx, cfg)
		require.NoError(t, err)
		defer cb.Close()
		b := &harness{t: t, st: st, c: cb}
		name := b.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(60)}).Metadata.Name
		synctest.Wait()
		require.Equal(t, ready, b.get(alice, name).Status.State)
		require.Equal(t, name, f.last(t).GetLease().GetName())

		// Ten windows on: online all along, in the store and to B.
		before := log.len()
		span := 10 * cb.window()
		time.Sleep(span)
		synctest.Wait()
		refreshes := log.since(before)
		for _, e := range refreshes {
			require.True(t, e.GetOnline(), "the store recorded e1 offline at version %d", e.GetMetadata().GetResourceVersion())
		}
		perInterval := int(span / testConfig.HeartbeatInterval)
		require.LessOrEqual(t, len(refreshes), perInterval, "at most one write per heartbeat interval")
		require.GreaterOrEqual(t, len(refreshes), perInterval-1, "A records e1 live every interval")
		e, err := cb.GetExporter("e1")
		require.NoError(t, err)
		require.Equal(t, coordinatorv1.ExporterStatus_EXPORTER_STATUS_LEASED, e.Status)

		// A dies: its stream ends and it can no longer write.
		shared.crashed.Store(true)
		lastVouched := e.GetLastSeen().AsTime()
		f.cancel()
		<-f.done
		ca.Close()
		time.Sleep(time.Until(lastVouched.Add(cb.window())))
		synctest.Wait()
		e, err = cb.GetExporter("e1")
		require.NoError(t, err)
		require.Equal(t, coordinatorv1.ExporterStatus_EXPORTER_STATUS_LOST, e.Status, "B sweeps e1 one window after A last vouched")
		time.Sleep(testConfig.ExporterGrace)
		synctest.Wait()
		l := b.get(alice, name)
		require.Equal(t, ended, l.Status.State)
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_LOST, l.Status.Reason)
	})
}
