package kubestore

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
)

// Watch implements store.Store. Events come in commit order within each
// kind; across kinds they come in the order the API server's watches
// deliver them, which need not be revision order (see the package doc).
// since 0 means from nothing: every record now, then every change.
func (s *Store) Watch(ctx context.Context, since uint64) (<-chan store.Event, error) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, store.ErrClosed
	}
	w := &watcher{signal: make(chan struct{}, 1), out: make(chan store.Event), quit: make(chan struct{})}
	switch {
	case since == 0:
		for _, m := range h.mirrors {
			for _, e := range m.objs {
				w.queue = append(w.queue, store.Event{Type: store.Put, Kind: m.kind, Object: e.rec, Revision: e.version})
			}
		}
		slices.SortFunc(w.queue, func(a, b store.Event) int { return cmp.Compare(a.Revision, b.Revision) })
	case since < h.floor || since < h.dropped:
		return nil, store.ErrCompacted
	default:
		for _, ev := range h.history {
			if ev.Revision > since {
				w.queue = append(w.queue, ev)
			}
		}
	}
	h.watchers[w] = struct{}{}
	s.wg.Go(func() {
		w.run(ctx)
		h.mu.Lock()
		delete(h.watchers, w)
		h.mu.Unlock()
	})
	return w.out, nil
}

// watcher queues events without bound, so a slow reader never holds up
// the reflectors, and feeds them to its channel in order.
type watcher struct {
	mu     sync.Mutex
	queue  []store.Event
	signal chan struct{}
	out    chan store.Event
	quit   chan struct{}
	once   sync.Once
}

func (w *watcher) push(ev store.Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
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
