package store

import (
	"context"
	"sync"
)

// Feed is one watch's queue, for store implementations: it holds events
// without bound, so a slow reader never holds up the writer that pushes
// them, and hands them to its channel in the order pushed.
type Feed struct {
	mu     sync.Mutex
	queue  []Event
	signal chan struct{}
	out    chan Event
	quit   chan struct{}
	once   sync.Once
}

// NewFeed returns a feed holding first; Run delivers it.
func NewFeed(first []Event) *Feed {
	return &Feed{queue: first, signal: make(chan struct{}, 1), out: make(chan Event), quit: make(chan struct{})}
}

// Events is the channel Run delivers to; it closes when Run returns.
func (f *Feed) Events() <-chan Event { return f.out }

// Push queues events after those before.
func (f *Feed) Push(events ...Event) {
	f.mu.Lock()
	f.queue = append(f.queue, events...)
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

// Stop ends Run, as when the store closes. It may be called more than once.
func (f *Feed) Stop() { f.once.Do(func() { close(f.quit) }) }

// Run delivers the queue until ctx ends or Stop is called, then closes the
// channel, dropping what was not delivered.
func (f *Feed) Run(ctx context.Context) {
	defer close(f.out)
	for {
		f.mu.Lock()
		batch := f.queue
		f.queue = nil
		f.mu.Unlock()
		for _, ev := range batch {
			select {
			case f.out <- ev:
			case <-ctx.Done():
				return
			case <-f.quit:
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-f.signal:
		case <-ctx.Done():
			return
		case <-f.quit:
			return
		}
	}
}
