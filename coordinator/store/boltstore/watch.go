package boltstore

import (
	"context"

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
	var first []store.Event
	for _, ev := range s.history {
		if ev.Revision > since {
			first = append(first, ev)
		}
	}
	f := store.NewFeed(first)
	s.watchers[f] = struct{}{}
	go func() {
		f.Run(ctx)
		s.mu.Lock()
		delete(s.watchers, f)
		s.mu.Unlock()
	}()
	return f.Events(), nil
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
	for f := range s.watchers {
		f.Push(events...)
	}
}
