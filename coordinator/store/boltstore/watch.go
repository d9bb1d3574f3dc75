package boltstore

import (
	"context"
	"sync"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
)

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, since uint64) (<-chan store.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return nil, store.ErrClosed
	default:
	}
	oldest := s.revision + 1
	if len(s.history) > 0 {
		oldest = s.history[0].Revision
	}
	if since+1 < oldest {
		return nil, store.ErrCompacted
	}
	w := &watcher{signal: make(chan struct{}, 1), out: make(chan store.Event), quit: make(chan struct{})}
	for _, ev := range s.history {
		if ev.Revision > since {
			w.queue = append(w.queue, ev)
		}
	}
	s.watchers[w] = struct{}{}
	go func() {
		w.run(ctx)
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	return w.out, nil
}

// publish records committed changes and hands them to every watcher.
func (s *Store) publish(rev uint64, events []store.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revision = rev
	if len(events) == 0 {
		return
	}
	s.history = append(s.history, events...)
	if over := len(s.history) - historySize; over > 0 {
		s.history = append(s.history[:0], s.history[over:]...)
	}
	for w := range s.watchers {
		w.push(events)
	}
}

// watcher queues events without bound, so a slow reader never holds up
// commits, and feeds them to its channel in order.
type watcher struct {
	mu     sync.Mutex
	queue  []store.Event
	signal chan struct{}
	out    chan store.Event
	quit   chan struct{}
	once   sync.Once
}

func (w *watcher) push(events []store.Event) {
	w.mu.Lock()
	w.queue = append(w.queue, events...)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watcher) stop() { w.once.Do(func() { close(w.quit) }) }

func (w *watcher) run(ctx context.Context) {
	defer close(w.out)
	for {
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, ev := range batch {
			select {
			case w.out <- ev:
			case <-ctx.Done():
				return
			case <-w.quit:
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-w.signal:
		case <-ctx.Done():
			return
		case <-w.quit:
			return
		}
	}
}
