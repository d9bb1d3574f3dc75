package kubestore

import (
	"cmp"
	"context"
	"slices"

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
	var first []store.Event
	switch {
	case since == 0:
		for _, m := range h.mirrors {
			for _, e := range m.objs {
				first = append(first, store.Event{Type: store.Put, Kind: m.kind, Object: e.rec, Revision: e.version})
			}
		}
		slices.SortFunc(first, func(a, b store.Event) int { return cmp.Compare(a.Revision, b.Revision) })
	case since < h.floor || since < h.dropped:
		return nil, store.ErrCompacted
	default:
		for _, ev := range h.history {
			if ev.Revision > since {
				first = append(first, ev)
			}
		}
	}
	f := store.NewFeed(first)
	h.watchers[f] = struct{}{}
	s.wg.Go(func() {
		f.Run(ctx)
		h.mu.Lock()
		delete(h.watchers, f)
		h.mu.Unlock()
	})
	return f.Events(), nil
}
