package exporter

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// logBacklog is how many recent entries a new log stream starts with, so
// that a client attaching just after a failure still sees it. The backlog
// keeps info and above: a debug entry per call would push the failures
// out.
const logBacklog = 256

// subscriberQueue bounds what a slow log reader may fall behind by; past it,
// entries are dropped for that reader rather than stalling drivers.
const subscriberQueue = 1024

// logHub fans the exporter's log records out to log streams.
type logHub struct {
	mu sync.Mutex
	// recent is a ring of the last logBacklog entries at info and above,
	// the oldest at next once it is full.
	recent  []*jumpmeshv1.LogEntry
	next    int
	subs    map[chan *jumpmeshv1.LogEntry]jumpmeshv1.Severity // each stream's minimum
	closed  bool
	dropped int
	// debug counts the streams that take debug entries. While there is
	// none, a debug record goes nowhere, and logging it costs nothing.
	debug atomic.Int32
}

func newLogHub() *logHub {
	return &logHub{subs: map[chan *jumpmeshv1.LogEntry]jumpmeshv1.Severity{}}
}

// wants reports whether an entry at l would go anywhere.
func (h *logHub) wants(l slog.Level) bool {
	return l >= slog.LevelInfo || h.debug.Load() > 0
}

func (h *logHub) publish(e *jumpmeshv1.LogEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.GetSeverity() >= jumpmeshv1.Severity_SEVERITY_INFO {
		if len(h.recent) < logBacklog {
			h.recent = append(h.recent, e)
		} else {
			h.recent[h.next] = e
			h.next = (h.next + 1) % logBacklog
		}
	}
	for ch, min := range h.subs {
		if e.GetSeverity() < min {
			continue
		}
		select {
		case ch <- e:
		default:
			h.dropped++
		}
	}
}

// subscribe returns the backlog at min and above and a channel of new
// entries at min and above, closed when the hub closes; cancel stops the
// subscription.
func (h *logHub) subscribe(min jumpmeshv1.Severity) (backlog []*jumpmeshv1.LogEntry, ch chan *jumpmeshv1.LogEntry, cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch = make(chan *jumpmeshv1.LogEntry, subscriberQueue)
	if h.closed {
		close(ch)
		return nil, ch, func() {}
	}
	h.subs[ch] = min
	debug := min <= jumpmeshv1.Severity_SEVERITY_DEBUG
	if debug {
		h.debug.Add(1)
	}
	for _, e := range slices.Concat(h.recent[h.next:], h.recent[:h.next]) {
		if e.GetSeverity() >= min {
			backlog = append(backlog, e)
		}
	}
	return backlog, ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
			if debug {
				h.debug.Add(-1)
			}
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
	h.debug.Store(0)
}

// teeHandler logs to next and publishes each record a log stream may take
// to the hub, with the attributes given to WithAttrs (the next handler
// formats its own copy).
type teeHandler struct {
	next  slog.Handler
	hub   *logHub
	attrs []slog.Attr
}

// Enabled admits what the local handler shows and what a log stream may
// take, which can be more: a stream may ask for debug entries while the
// local handler shows only info.
func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.hub.wants(l) || t.next.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if t.hub.wants(r.Level) {
		t.hub.publish(t.entry(r))
	}
	if t.next.Enabled(ctx, r.Level) {
		return t.next.Handle(ctx, r)
	}
	return nil
}

// entry formats r as a log stream sends it.
func (t teeHandler) entry(r slog.Record) *jumpmeshv1.LogEntry {
	var msg strings.Builder
	msg.WriteString(r.Message)
	appendAttr := func(a slog.Attr) bool {
		msg.WriteByte(' ')
		msg.WriteString(a.Key)
		msg.WriteByte('=')
		msg.WriteString(a.Value.String())
		return true
	}
	for _, a := range t.attrs {
		appendAttr(a)
	}
	r.Attrs(appendAttr)
	return &jumpmeshv1.LogEntry{Time: timestamppb.New(r.Time), Severity: severityOf(r.Level), Message: msg.String()}
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
