package mesh

import (
	"context"
	"sync"
)

// loop runs functions one at a time on one goroutine: a session's state
// lives on its loop, and everything that happens to it (relay messages,
// pongs, finished dials, timers) is posted there.
type loop struct {
	mu   sync.Mutex
	q    []func()
	wake chan struct{}
}

func newLoop() *loop { return &loop{wake: make(chan struct{}, 1)} }

// post queues f; it never blocks.
func (l *loop) post(f func()) {
	l.mu.Lock()
	l.q = append(l.q, f)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run runs posted functions until ctx ends.
func (l *loop) run(ctx context.Context) {
	for {
		l.mu.Lock()
		q := l.q
		l.q = nil
		l.mu.Unlock()
		for _, f := range q {
			if ctx.Err() != nil {
				return
			}
			f()
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-l.wake:
		case <-ctx.Done():
			return
		}
	}
}
