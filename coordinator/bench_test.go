package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/stretchr/testify/require"
)

// benchConfig: heartbeats far apart, so a benchmark measures leases, not
// heartbeats.
var benchConfig = Config{HeartbeatInterval: time.Hour, PreemptionNotice: -1}

// lab sets up a coordinator with n online exporters (board=rpi4) and
// clients c0..c(clients-1).
func lab(b *testing.B, n, clients int) (*harness, func()) {
	b.Helper()
	h := newHarness(b, benchConfig)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			h.exporter(fmt.Sprintf("e%05d", i), map[string]string{"board": "rpi4", "slot": fmt.Sprint(i)})
		})
	}
	wg.Wait()
	for i := range clients {
		h.client(fmt.Sprintf("c%d", i), nil)
	}
	var streams []*fakeExporter
	for i := range n {
		streams = append(streams, h.connect(fmt.Sprintf("e%05d", i), false))
	}
	require.Eventually(b, func() bool {
		list, _ := h.c.ListExporters("")
		for _, e := range list {
			if !e.Online {
				return false
			}
		}
		return len(list) == n
	}, time.Minute, 10*time.Millisecond)
	return h, func() {
		for _, f := range streams {
			f.cancel()
		}
		for _, f := range streams {
			<-f.done
		}
		h.stop()
	}
}

// createAndWait creates a lease and returns how long until it was ready.
func createAndWait(ctx context.Context, c *Coordinator, who Identity) (time.Duration, error) {
	start := time.Now()
	l, err := c.CreateLease(ctx, who, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"})
	if err != nil {
		return 0, err
	}
	err = c.WatchLease(ctx, who, l.GetMetadata().GetName(), func(l *coordinatorv1.Lease) error {
		if l.GetStatus().GetState() == ready {
			return errReady
		}
		return nil
	})
	if !errors.Is(err, errReady) {
		return 0, fmt.Errorf("lease %s: not ready: %v", l.GetMetadata().GetName(), err)
	}
	return time.Since(start), nil
}

func reportLatencies(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "leases/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkLeaseBurst: 1,000 exporters are free and 1,000 leases are
// created at once, so up to 1,000 wait together; each is timed from
// create to ready.
func BenchmarkLeaseBurst(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		h, done := lab(b, n, 50)
		b.StartTimer()
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			who := Identity{Kind: token.Client, Name: fmt.Sprintf("c%d", i%50)}
			wg.Go(func() {
				d, err := createAndWait(context.Background(), h.c, who)
				if err != nil {
					b.Error(err)
				}
				lat[i] = d
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		reportLatencies(b, lat, elapsed)
		done()
		b.StartTimer()
	}
}

// BenchmarkLeaseHandoff: all 1,000 exporters are leased and 1,000 more
// leases wait behind them. Releasing a lease hands its exporter to the
// head of the queue; a new lease joins the back, keeping 1,000 waiting.
// Each handoff is timed from release to the next lease being ready.
func BenchmarkLeaseHandoff(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		h, done := lab(b, n, 1)
		who := Identity{Kind: token.Client, Name: "c0"}
		ctx := context.Background()
		var held []string
		for range n {
			l, err := h.c.CreateLease(ctx, who, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"})
			require.NoError(b, err)
			held = append(held, l.GetMetadata().GetName())
		}
		var queue []string
		for range n {
			l, err := h.c.CreateLease(ctx, who, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"})
			require.NoError(b, err)
			queue = append(queue, l.GetMetadata().GetName())
		}
		require.Eventually(b, func() bool {
			list, _ := h.c.ListLeases(who, "", false)
			r := 0
			for _, l := range list {
				if l.GetStatus().GetState() == ready {
					r++
				}
			}
			return r == n
		}, time.Minute, 10*time.Millisecond)
		b.StartTimer()

		// Release the held leases from 64 workers; each waits for the
		// lease at the head of the queue at its release to be ready.
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		var mu sync.Mutex
		next := 0
		start := time.Now()
		for range 64 {
			wg.Go(func() {
				for {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					if i >= n {
						return
					}
					t0 := time.Now()
					if _, err := h.c.DeleteLease(ctx, who, held[i]); err != nil {
						b.Error(err)
						return
					}
					if _, err := h.c.CreateLease(ctx, who, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"}); err != nil {
						b.Error(err)
						return
					}
					err := h.c.WatchLease(ctx, who, queue[i], func(l *coordinatorv1.Lease) error {
						if l.GetStatus().GetState() == ready {
							return errReady
						}
						return nil
					})
					if !errors.Is(err, errReady) {
						b.Errorf("lease %s not ready: %v", queue[i], err)
						return
					}
					lat[i] = time.Since(t0)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		reportLatencies(b, lat, elapsed)
		done()
		b.StartTimer()
	}
}

// BenchmarkStoreCreate is the baseline: how many lease records per second
// the store itself commits, 5,000 from 64 writers (as the scheduler writes
// in parallel). A lease costs at least three writes (create, claim, ready).
func BenchmarkStoreCreate(b *testing.B) {
	const writes, writers = 5000, 64
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		st := openStore(b, b.TempDir())
		b.StartTimer()
		var wg sync.WaitGroup
		start := time.Now()
		for w := range writers {
			wg.Go(func() {
				for i := w; i < writes; i += writers {
					l := &coordinatorv1.Lease{Metadata: &coordinatorv1.ObjectMeta{Name: fmt.Sprintf("l%d", i)},
						Spec: &coordinatorv1.LeaseSpec{Client: "c0", Selector: "board=rpi4"}}
					if err := st.Create(ctx, l); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(writes/elapsed.Seconds(), "writes/s")
		require.NoError(b, st.Close())
		b.StartTimer()
	}
}

// BenchmarkMemory10kExporters reports the heap a coordinator holds for
// 10,000 registered exporters, each with a four-driver report, once it has
// loaded them from its store.
func BenchmarkMemory10kExporters(b *testing.B) {
	const n = 10000
	report := func(name string) *jumpmeshv1.Report {
		r := &jumpmeshv1.Report{Name: name}
		for _, d := range []string{"power", "serial", "storage", "scripts"} {
			r.Drivers = append(r.Drivers, &jumpmeshv1.DriverReport{
				Uuid: name + "-" + d, Name: d, Type: "virtual." + d, Description: "board " + d,
				Interfaces: []*jumpmeshv1.InterfaceReport{{Name: "jumpmesh.drivers." + d + ".v1.X",
					Methods: []*jumpmeshv1.MethodReport{{Name: "On", Kind: jumpmeshv1.MethodKind_METHOD_KIND_UNARY}}}},
			})
		}
		return r
	}
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		fillExporters(b, dir, n, report)
		// Measure a coordinator loading them all from the store.
		h := &harness{t: b, dir: dir}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		h.start(benchConfig)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		list, err := h.c.ListExporters("")
		require.NoError(b, err)
		require.Len(b, list, n)
		heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(heap/(1<<20), "heap-MiB")
		b.ReportMetric(heap/n, "heap-B/exporter")
		h.stop()
		b.StartTimer()
	}
}

// fillExporters registers n exporters in a store in dir, through a
// coordinator that is gone when it returns.
func fillExporters(b *testing.B, dir string, n int, report func(string) *jumpmeshv1.Report) {
	st := openStore(b, dir)
	cfg := benchConfig
	cfg.Store, cfg.Logger = st, quietLogger()
	c, err := New(context.Background(), cfg)
	require.NoError(b, err)
	h := &harness{t: b, dir: dir, st: st, c: c}
	defer h.stop()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name := fmt.Sprintf("e%05d", i)
			h.exporter(name, map[string]string{"board": "rpi4", "rack": fmt.Sprint(i / 40)})
			if _, err := c.Register(context.Background(), name, report(name), make([]byte, 32)); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}

// BenchmarkLeaseBurstAPI is BenchmarkLeaseBurst through the API: HTTPS
// on loopback, Connect over HTTP/2, tokens checked on every call.
func BenchmarkLeaseBurstAPI(b *testing.B) {
	const n, clients = 1000, 50
	for b.Loop() {
		b.StopTimer()
		h, done := lab(b, n, 0)
		// The coordinator's own kind of certificate (ECDSA P-256), not
		// httptest's RSA one.
		cert, err := certs.LoadOrCreate(b.TempDir(), []string{"127.0.0.1"})
		require.NoError(b, err)
		srv := httptest.NewUnstartedServer(h.c.Handler())
		srv.EnableHTTP2 = true
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		var conns []*coordclient.Client
		for i := range clients {
			_, tok, err := h.c.CreateClient(context.Background(), fmt.Sprintf("c%d", i), nil)
			require.NoError(b, err)
			cl, err := coordclient.New(coordclient.Conn{Endpoint: srv.URL, Token: tok,
				TLS: coordclient.TLSConfig{CAFingerprint: certs.ChainFingerprint(cert)}})
			require.NoError(b, err)
			// Connect once, as a long-running client (a CI runner) is.
			_, err = cl.Leases.ListLeases(context.Background(), connect.NewRequest(&coordinatorv1.ListLeasesRequest{}))
			require.NoError(b, err)
			conns = append(conns, cl)
		}
		b.StartTimer()
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			cl := conns[i%clients]
			wg.Go(func() {
				t0 := time.Now()
				ctx := context.Background()
				l, err := cl.Leases.CreateLease(ctx, connect.NewRequest(&coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"}))
				if err != nil {
					b.Error(err)
					return
				}
				stream, err := cl.Leases.WatchLease(ctx, connect.NewRequest(&coordinatorv1.WatchLeaseRequest{Name: l.Msg.GetMetadata().GetName()}))
				if err != nil {
					b.Error(err)
					return
				}
				defer stream.Close()
				for stream.Receive() {
					if stream.Msg().GetStatus().GetState() == ready {
						lat[i] = time.Since(t0)
						return
					}
				}
				b.Errorf("lease not ready: %v", stream.Err())
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		reportLatencies(b, lat, elapsed)
		for _, cl := range conns {
			cl.Close()
		}
		srv.Close()
		done()
		b.StartTimer()
	}
}
