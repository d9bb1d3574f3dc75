package exporter

import "sync"

// maxIdleWorkers bounds the goroutines kept waiting for work: enough for a
// client's back-to-back calls (each runs on two: the call and the watch on
// its client), few enough that an idle exporter holds next to nothing.
const maxIdleWorkers = 8

// workers runs functions on goroutines that wait for the next function
// once done, up to maxIdleWorkers of them; past that, a function gets a
// goroutine of its own. A new goroutine starts on a small stack and grows
// it, copying it each time, as a call goes down through protobuf and the
// transport: on a fast link that costs a call several microseconds, which a
// worker that keeps its grown stack saves.
type workers struct {
	wg sync.WaitGroup

	mu      sync.Mutex
	idle    []chan func() // the inboxes of the waiting workers, the latest last
	stopped bool
}

// Go runs fn on a waiting worker, or on a new one. A nil w runs fn on a
// goroutine of its own.
func (w *workers) Go(fn func()) {
	if w == nil {
		go fn()
		return
	}
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		// The latest to finish has the warmest stack and caches.
		inbox := w.idle[n-1]
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		inbox <- fn
		return
	}
	w.mu.Unlock()
	w.wg.Go(func() { w.run(fn) })
}

func (w *workers) run(fn func()) {
	// Buffered, so that Go never waits for the worker to be back at it.
	inbox := make(chan func(), 1)
	for fn != nil {
		fn()
		w.mu.Lock()
		if w.stopped || len(w.idle) == maxIdleWorkers {
			w.mu.Unlock()
			return
		}
		w.idle = append(w.idle, inbox)
		w.mu.Unlock()
		fn = <-inbox
	}
}

// stop ends the waiting workers and waits for the busy ones. Go may still
// be called, from a busy worker, until it returns.
func (w *workers) stop() {
	w.mu.Lock()
	w.stopped = true
	for _, inbox := range w.idle {
		close(inbox)
	}
	w.idle = nil
	w.mu.Unlock()
	w.wg.Wait()
}
