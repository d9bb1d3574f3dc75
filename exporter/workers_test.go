package exporter

import (
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// idleCount is how many workers wait for work.
func (w *workers) idleCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.idle)
}

func TestWorkers(t *testing.T) {
	tests := []struct {
		name     string
		calls    int // functions running at once
		wantIdle int // workers waiting once they are done
	}{
		{"one", 1, 1},
		{"a few", 3, 3},
		{"more than are kept", maxIdleWorkers + 5, maxIdleWorkers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var w workers
				var started sync.WaitGroup
				started.Add(tt.calls)
				ran := make(chan int, tt.calls)
				for i := range tt.calls {
					w.Go(func() {
						started.Done()
						started.Wait()
						ran <- i
					})
				}
				synctest.Wait()
				require.Len(t, ran, tt.calls, "every function runs, at once")
				require.Equal(t, tt.wantIdle, w.idleCount(), "finished workers wait, up to a bound")

				// The next function runs on a waiting worker.
				done := make(chan struct{})
				w.Go(func() { <-done })
				synctest.Wait()
				require.Equal(t, tt.wantIdle-1, w.idleCount())
				close(done)
				synctest.Wait()
				require.Equal(t, tt.wantIdle, w.idleCount())

				w.stop() // the bubble ends only once every worker has
			})
		})
	}
}

// TestWorkersStopWaitsForBusy: stop waits for a busy worker, which may
// still start others meanwhile.
func TestWorkersStopWaitsForBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w workers
		release := make(chan struct{})
		var late bool
		w.Go(func() {
			<-release
			w.Go(func() { late = true })
		})
		stopped := make(chan struct{})
		go func() {
			w.stop()
			close(stopped)
		}()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("stop returned while a worker was busy")
		default:
		}
		close(release)
		<-stopped
		require.True(t, late, "a function started during stop ran before stop returned")
		require.Zero(t, w.idleCount())
	})
}

// TestWorkersNil: without workers, a function runs on a goroutine of its
// own.
func TestWorkersNil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w *workers
		ran := make(chan struct{})
		w.Go(func() { close(ran) })
		<-ran
	})
}
