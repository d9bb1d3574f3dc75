package power

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

func TestTrackerWatchSeesCurrentThenEveryChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker(false)
		var seen []bool
		done := make(chan error, 1)
		go func() {
			done <- tr.Watch(t.Context(), func(s Status) error {
				seen = append(seen, s.On)
				return nil
			})
		}()
		synctest.Wait()
		require.True(t, tr.Set(true))
		require.False(t, tr.Set(true), "setting the same state is no change")
		require.True(t, tr.Set(false))
		require.True(t, tr.Set(true))
		tr.Close()
		require.NoError(t, <-done, "Close ends a watch cleanly")
		require.Equal(t, []bool{false, true, false, true}, seen, "a quick off-on must not be lost")
	})
}

func TestTrackerWatchEnds(t *testing.T) {
	errStop := errors.New("stop")
	tests := []struct {
		name string
		run  func(tr *Tracker, cancel context.CancelFunc)
		fn   func(Status) error
		want error
	}{
		{"context ends", func(_ *Tracker, cancel context.CancelFunc) { cancel() }, func(Status) error { return nil }, context.Canceled},
		{"fn fails", func(*Tracker, context.CancelFunc) {}, func(Status) error { return errStop }, errStop},
		{"tracker closed before", func(tr *Tracker, _ context.CancelFunc) {}, func(Status) error { return nil }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := NewTracker(true)
				if tt.want == nil {
					tr.Close()
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- tr.Watch(ctx, tt.fn) }()
				synctest.Wait()
				tt.run(tr, cancel)
				require.ErrorIs(t, <-done, tt.want)
				tr.mu.Lock()
				defer tr.mu.Unlock()
				require.Empty(t, tr.watchers, "an ended watch must unregister")
			})
		})
	}
}

func TestTrackerSlowWatcherKeepsLatest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker(false)
		release := make(chan struct{})
		var last Status
		calls := 0
		done := make(chan error, 1)
		go func() {
			done <- tr.Watch(t.Context(), func(s Status) error {
				if calls == 0 {
					<-release // stuck while many changes come
				}
				calls++
				last = s
				return nil
			})
		}()
		synctest.Wait()
		for i := range 3 * maxPending {
			tr.Set(i%2 == 0)
		}
		final := tr.Set(!tr.Status().On)
		require.True(t, final)
		close(release)
		synctest.Wait()
		tr.Close()
		require.NoError(t, <-done)
		require.Equal(t, tr.Status(), last, "a watcher that fell behind still ends at the current state")
		require.LessOrEqual(t, calls, maxPending+1, "the queue of a slow watcher is bounded")
	})
}
