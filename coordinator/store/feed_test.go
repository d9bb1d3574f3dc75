package store

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

func events(from, to uint64) []Event {
	var out []Event
	for r := from; r <= to; r++ {
		out = append(out, Event{Type: Put, Kind: Leases, Revision: r})
	}
	return out
}

func revisions(evs []Event) []uint64 {
	var out []uint64
	for _, ev := range evs {
		out = append(out, ev.Revision)
	}
	return out
}

// TestFeedOrder: what the feed starts with, then everything pushed, in
// order; pushing never waits for the reader.
func TestFeedOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := NewFeed(events(1, 2))
		go f.Run(t.Context())
		// Nobody reads yet: these must not block.
		for r := range uint64(1000) {
			f.Push(Event{Type: Put, Kind: Leases, Revision: 3 + r})
		}
		var got []Event
		for ev := range f.Events() {
			got = append(got, ev)
			if len(got) == 1002 {
				break
			}
		}
		require.Equal(t, revisions(events(1, 1002)), revisions(got))
		f.Stop()
	})
}

// TestFeedEnds: Stop or the context's end closes the channel, dropping
// what was not delivered.
func TestFeedEnds(t *testing.T) {
	for _, how := range []string{"stop", "cancel"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				f := NewFeed(events(1, 3))
				go f.Run(ctx)
				require.Equal(t, uint64(1), (<-f.Events()).Revision)
				synctest.Wait()
				if how == "stop" {
					f.Stop()
					f.Stop() // twice is harmless
				} else {
					cancel()
				}
				synctest.Wait()
				_, open := <-f.Events()
				require.False(t, open, "the channel closes")
			})
		})
	}
}
