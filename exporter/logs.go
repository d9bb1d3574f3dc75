package exporter

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// logBacklog is how many recent entries a new log stream starts with, so
// that a client attaching just after a failure still sees it.
const logBacklog = 256

// subscriberQueue bounds what a slow log reader may fall behind by; past it,
// entries are dropped for that reader rather than stalling drivers.
const subscriberQueue = 1024

// logHub fans the exporter's log records out to log streams.
type logHub struct {
	mu      sync.Mutex
	recent  []*jumpmeshv1.LogEntry
	subs    map[chan *jumpmeshv1.LogEntry]struct{}
	closed  bool
	dropped int
}

func newLogHub() *logHub {
	return &logHub{subs: map[chan *jumpmeshv1.LogEntry]struct{}{}}
}

func (h *logHub) publish(e *jumpmeshv1.LogEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recent) == logBacklog {
		h.recent = append(h.recent[:0], h.recent[1:]...)
	}
	h.recent = append(h.recent, e)
	for ch := range h.subs {
		select {
		case ch <- e:
		default:
			h.dropped++
		}
	}
}

// subscribe returns the backlog and a channel of new entries, closed when
// the hub closes; cancel stops the subscription.
func (h *logHub) subscribe() (backlog []*jumpmeshv1.LogEntry, ch chan *jumpmeshv1.LogEntry, cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch = make(chan *jumpmeshv1.LogEntry, subscriberQueue)
	if h.closed {
		close(ch)
		return nil, ch, func() {}
	}
	h.subs[ch] = struct{}{}
	backlog = append(backlog, h.recent...)
	return backlog, ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
	}
}

func (h *logHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

// teeHandler logs to next and publishes each record to the hub, with the
// attributes given to WithAttrs (the next handler formats its own copy).
type teeHandler struct {
	next  slog.Handler
	hub   *logHub
	attrs []slog.Attr
}

// Enabled admits everything: log streams may ask for debug entries even
// when the local handler shows only info.
func (t teeHandler) Enabled(context.Context, slog.Level) bool { return true }

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var msg strings.Builder
	msg.WriteString(r.Message)
	appendAttr := func(a slog.Attr) bool {
		fmt.Fprintf(&msg, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range t.attrs {
		appendAttr(a)
	}
	r.Attrs(appendAttr)
	t.hub.publish(&jumpmeshv1.LogEntry{Time: timestamppb.New(r.Time), Severity: severityOf(r.Level), Message: msg.String()})
	if t.next.Enabled(ctx, r.Level) {
		return t.next.Handle(ctx, r)
	}
	return nil
}

func (t teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return teeHandler{t.next.WithAttrs(attrs), t.hub, append(slices.Clip(t.attrs), attrs...)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.next.WithGroup(name), t.hub, t.attrs}
}

func severityOf(l slog.Level) jumpmeshv1.Severity {
	switch {
	case l >= slog.LevelError:
		return jumpmeshv1.Severity_SEVERITY_ERROR
	case l >= slog.LevelWarn:
		return jumpmeshv1.Severity_SEVERITY_WARN
	case l >= slog.LevelInfo:
		return jumpmeshv1.Severity_SEVERITY_INFO
	}
	return jumpmeshv1.Severity_SEVERITY_DEBUG
}
