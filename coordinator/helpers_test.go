package coordinator

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/store/boltstore"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Test timings, short so that virtual time moves little.
var testConfig = Config{
	HeartbeatInterval: 10 * time.Second,
	MissedHeartbeats:  3,
	ExporterGrace:     time.Minute,
	PreemptionNotice:  -1, // preempt at once unless a test says otherwise
	LeaseHistory:      time.Hour,
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func openStore(t testing.TB, dir string) store.Store {
	st, err := boltstore.Open(filepath.Join(dir, "store.db"))
	require.NoError(t, err)
	return st
}

// harness is a coordinator over a store in a temp dir.
type harness struct {
	t   testing.TB
	dir string
	st  store.Store
	c   *Coordinator
}

func newHarness(t testing.TB, cfg Config) *harness {
	h := &harness{t: t, dir: t.TempDir()}
	h.start(cfg)
	return h
}

func (h *harness) start(cfg Config) {
	h.st = openStore(h.t, h.dir)
	cfg.Store, cfg.Logger = h.st, quietLogger()
	c, err := New(context.Background(), cfg)
	require.NoError(h.t, err)
	h.c = c
}

// stop closes the coordinator and its store, as a process exit would.
func (h *harness) stop() {
	h.c.Close()
	require.NoError(h.t, h.st.Close())
}

func (h *harness) client(name string, labels map[string]string) Identity {
	_, _, err := h.c.CreateClient(context.Background(), name, labels)
	require.NoError(h.t, err)
	return Identity{Kind: token.Client, Name: name}
}

func (h *harness) exporter(name string, labels map[string]string) {
	_, _, err := h.c.CreateExporter(context.Background(), name, labels)
	require.NoError(h.t, err)
}

func (h *harness) lease(who Identity, req *coordinatorv1.CreateLeaseRequest) *coordinatorv1.Lease {
	l, err := h.c.CreateLease(context.Background(), who, req)
	require.NoError(h.t, err)
	return l
}

func (h *harness) get(who Identity, name string) *coordinatorv1.Lease {
	l, err := h.c.GetLease(context.Background(), who, name)
	require.NoError(h.t, err)
	return l
}

func minutes(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * time.Minute) }

// fakeExporter is an exporter's status stream without a network: it sends
// heartbeats on time until stopped, and records what the coordinator sends.
type fakeExporter struct {
	name    string
	history []*coordinatorv1.StatusResponse
	beats   chan error
	got     chan *coordinatorv1.StatusResponse
	done    chan error
	cancel  context.CancelFunc
}

// connect opens the exporter's status stream. With heartbeats false, it
// goes silent after opening.
func (h *harness) connect(name string, heartbeats bool) *fakeExporter {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeExporter{name: name, beats: make(chan error), got: make(chan *coordinatorv1.StatusResponse, 1024),
		done: make(chan error, 1), cancel: cancel}
	recv := func() error {
		select {
		case err := <-f.beats:
			return err
		case <-ctx.Done():
			return io.EOF
		}
	}
	send := func(r *coordinatorv1.StatusResponse) error {
		f.got <- r
		return nil
	}
	c := h.c
	go func() { f.done <- c.ServeStatus(ctx, name, recv, send) }()
	if heartbeats {
		go func() {
			tick := time.NewTicker(testConfig.HeartbeatInterval)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					select {
					case f.beats <- nil:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return f
}

// drop ends the stream as a crash would, and waits for the coordinator to
// notice.
func (f *fakeExporter) drop(t testing.TB) error {
	f.cancel()
	return <-f.done
}

// last returns the latest message the coordinator sent, draining the rest.
func (f *fakeExporter) last(t testing.TB) *coordinatorv1.StatusResponse {
	f.drain()
	require.NotEmpty(t, f.history, "exporter %s got no status", f.name)
	return f.history[len(f.history)-1]
}

func (f *fakeExporter) drain() {
	for {
		select {
		case r := <-f.got:
			f.history = append(f.history, r)
		default:
			return
		}
	}
}

// ended returns how the coordinator told the exporter that lease ended.
func (f *fakeExporter) ended(t testing.TB, lease string) *coordinatorv1.EndedLease {
	f.drain()
	for _, r := range f.history {
		if r.GetEnded().GetName() == lease {
			return r.GetEnded()
		}
	}
	require.Failf(t, "not told", "exporter %s was not told that lease %s ended", f.name, lease)
	return nil
}

func bearer(tok string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	return h
}
