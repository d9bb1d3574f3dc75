package exporter

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/stretchr/testify/require"
)

const (
	sevDebug = jumpmeshv1.Severity_SEVERITY_DEBUG
	sevInfo  = jumpmeshv1.Severity_SEVERITY_INFO
	sevWarn  = jumpmeshv1.Severity_SEVERITY_WARN
)

func messages(entries []*jumpmeshv1.LogEntry) []string {
	var m []string
	for _, e := range entries {
		m = append(m, e.GetMessage())
	}
	return m
}

// numbered is "entry from" .. "entry to-1".
func numbered(from, to int) []string {
	var m []string
	for i := from; i < to; i++ {
		m = append(m, fmt.Sprintf("entry %d", i))
	}
	return m
}

// TestLogBacklog: a new stream starts with the latest entries at info and
// above, oldest first, at most logBacklog of them; debug entries take no
// room there.
func TestLogBacklog(t *testing.T) {
	tests := []struct {
		name      string
		published int
		want      []string
	}{
		{"none", 0, nil},
		{"a few", 3, numbered(0, 3)},
		{"a full ring", logBacklog, numbered(0, logBacklog)},
		{"past the ring", logBacklog + 10, numbered(10, logBacklog+10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newLogHub()
			for i := range tt.published {
				h.publish(&jumpmeshv1.LogEntry{Severity: sevInfo, Message: fmt.Sprintf("entry %d", i)})
				h.publish(&jumpmeshv1.LogEntry{Severity: sevDebug, Message: "debug"})
			}
			backlog, _, cancel := h.subscribe(sevDebug)
			defer cancel()
			require.Equal(t, tt.want, messages(backlog))
		})
	}
}

func TestLogBacklogMinSeverity(t *testing.T) {
	h := newLogHub()
	for i, sev := range []jumpmeshv1.Severity{sevInfo, sevWarn, sevInfo, sevWarn} {
		h.publish(&jumpmeshv1.LogEntry{Severity: sev, Message: fmt.Sprintf("entry %d", i)})
	}
	backlog, _, cancel := h.subscribe(sevWarn)
	defer cancel()
	require.Equal(t, []string{"entry 1", "entry 3"}, messages(backlog))
}

// TestLogDebugEntries: debug entries go, live, to the streams that ask
// for them, and cost nothing to log while none does.
func TestLogDebugEntries(t *testing.T) {
	h := newLogHub()
	log := slog.New(teeHandler{next: slog.DiscardHandler, hub: h})
	ctx := context.Background()
	require.False(t, log.Enabled(ctx, slog.LevelDebug), "no stream takes debug entries")
	require.True(t, log.Enabled(ctx, slog.LevelInfo), "info entries are kept for streams to come")

	_, infoCh, cancelInfo := h.subscribe(sevInfo)
	defer cancelInfo()
	require.False(t, log.Enabled(ctx, slog.LevelDebug))
	_, debugCh, cancelDebug := h.subscribe(sevDebug)
	require.True(t, log.Enabled(ctx, slog.LevelDebug))

	log.Debug("call", "method", "On")
	log.Info("call failed", "method", "Status")
	require.Equal(t, "call method=On", (<-debugCh).GetMessage())
	require.Equal(t, "call failed method=Status", (<-debugCh).GetMessage())
	require.Equal(t, "call failed method=Status", (<-infoCh).GetMessage())
	require.Empty(t, infoCh, "an info stream gets no debug entries")

	cancelDebug()
	require.False(t, log.Enabled(ctx, slog.LevelDebug), "the debug stream has gone")
	backlog, _, cancel := h.subscribe(sevDebug)
	defer cancel()
	require.Equal(t, []string{"call failed method=Status"}, messages(backlog), "the backlog keeps no debug entries")
}
