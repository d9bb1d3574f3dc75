package power

import (
	"context"
	"sync"
	"time"
)

// maxPending bounds the changes queued for a watcher that does not keep up.
// Beyond it the oldest are dropped: a watcher that far behind only needs to
// end up at the current state.
const maxPending = 16

// Tracker holds a power state for drivers that keep it themselves, and
// tells watchers of every change, in order.
type Tracker struct {
	mu       sync.Mutex
	status   Status
	watchers map[*watcher]struct{}
	closed   bool
}

type watcher struct {
	pending []Status // guarded by Tracker.mu
	wake    chan struct{}
}

// NewTracker returns a tracker in the given state since now.
func NewTracker(on bool) *Tracker {
	return &Tracker{status: Status{On: on, Since: time.Now()}, watchers: map[*watcher]struct{}{}}
}

// Status returns the current state.
func (t *Tracker) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// Set changes the state and reports whether it changed.
func (t *Tracker) Set(on bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status.On == on {
		return false
	}
	t.status = Status{On: on, Since: time.Now()}
	for w := range t.watchers {
		if len(w.pending) == maxPending {
			w.pending = w.pending[1:]
		}
		w.pending = append(w.pending, t.status)
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// Watch calls fn with the current state, then with every change, until
// ctx ends (returning its error), fn fails, or the tracker closes
// (returning nil).
func (t *Tracker) Watch(ctx context.Context, fn func(Status) error) error {
	w := &watcher{wake: make(chan struct{}, 1)}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	w.pending = []Status{t.status}
	t.watchers[w] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.watchers, w)
		t.mu.Unlock()
	}()
	for {
		t.mu.Lock()
		pending, closed := w.pending, t.closed
		w.pending = nil
		t.mu.Unlock()
		for _, st := range pending {
			if err := fn(st); err != nil {
				return err
			}
		}
		if closed {
			return nil
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close ends every Watch, after it has seen the changes made so far.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for w := range t.watchers {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}
