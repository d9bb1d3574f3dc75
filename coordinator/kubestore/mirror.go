package kubestore

import (
	"context"
	"log/slog"
	"strconv"
	"sync"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// historySize is how many recent changes a watch can resume from: enough
// to cover the gap between listing every kind and starting to watch.
const historySize = 16384

// hub holds what the store has seen of the cluster: a mirror of each kind,
// fed by that kind's reflector (client-go's informer machinery: a list,
// then a watch, resumed or relisted as needed), and the recent changes of
// every kind, which watches replay.
type hub struct {
	mu       sync.Mutex
	mirrors  map[store.Kind]*mirror
	history  []store.Event // oldest first
	dropped  uint64        // highest revision dropped from history
	floor    uint64        // every mirror started from this revision
	watchers map[*store.Feed]struct{}
	closed   bool
	// changed is closed and replaced on every change, waking whoever
	// waits for the mirrors to catch up.
	changed chan struct{}
	log     *slog.Logger
}

func newHub(floor uint64, log *slog.Logger) *hub {
	return &hub{mirrors: map[store.Kind]*mirror{}, floor: floor, watchers: map[*store.Feed]struct{}{},
		changed: make(chan struct{}), log: log}
}

// entry is one object as the mirror holds it, with its record.
type entry struct {
	obj     object
	rec     store.Object // nil for the store's own writes
	version uint64
}

// mirror is one kind as the store has seen it. It is the reflector's
// store: the reflector calls it, in order, with every change it watched.
type mirror struct {
	hub     *hub
	kind    store.Kind
	convert kindStore
	objs    map[string]entry // by object name
	applied uint64           // every change up to this revision is in objs
	synced  bool
	// recent holds the store's own writes until the watch brings them, so
	// an update right after a write need not read the object back.
	recent map[string]entry
	// written is the highest version the store wrote; deleting, its
	// deletes the watch has not brought yet. List waits for both.
	written  uint64
	deleting map[string]uint64
}

func (h *hub) addMirror(k store.Kind, conv kindStore) *mirror {
	m := &mirror{hub: h, kind: k, convert: conv, objs: map[string]entry{}, recent: map[string]entry{},
		deleting: map[string]uint64{}}
	h.mirrors[k] = m
	return m
}

// broadcastLocked wakes the waiters; h.mu is held.
func (h *hub) broadcastLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// publishLocked records an event and hands it to every watch.
func (h *hub) publishLocked(ev store.Event) {
	h.history = append(h.history, ev)
	if over := len(h.history) - historySize; over > 0 {
		for _, old := range h.history[:over] {
			h.dropped = max(h.dropped, old.Revision)
		}
		h.history = append(h.history[:0], h.history[over:]...)
	}
	for f := range h.watchers {
		f.Push(ev)
	}
}

// waitFor waits until cond, checked with h.mu held, is true.
func (h *hub) waitFor(ctx context.Context, cond func() bool) error {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return store.ErrClosed
		}
		ok, ch := cond(), h.changed
		h.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *mirror) record(obj any) (entry, bool) {
	rec, err := m.convert.toRecord(obj)
	if err != nil {
		// CRD validation keeps such objects out; one that got in anyway
		// is skipped rather than stopping the whole kind.
		m.hub.log.Warn("kubestore: skipping an object it cannot read", "kind", m.kind, "err", err)
		return entry{}, false
	}
	return entry{obj: obj.(object), rec: rec, version: rec.GetMetadata().GetResourceVersion()}, true
}

// Add implements cache.ReflectorStore.
func (m *mirror) Add(obj any) error { return m.put(obj) }

// Update implements cache.ReflectorStore.
func (m *mirror) Update(obj any) error { return m.put(obj) }

func (m *mirror) put(obj any) error {
	e, ok := m.record(obj)
	if !ok {
		return nil
	}
	name := e.obj.GetName()
	h := m.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	m.objs[name] = e
	if r, ok := m.recent[name]; ok && r.version <= e.version {
		delete(m.recent, name)
	}
	m.applied = max(m.applied, e.version)
	h.publishLocked(store.Event{Type: store.Put, Kind: m.kind, Object: e.rec, Revision: e.version})
	h.broadcastLocked()
	return nil
}

// Delete implements cache.ReflectorStore. The object is as it was deleted,
// its resourceVersion the revision of the delete.
func (m *mirror) Delete(obj any) error {
	o, ok := obj.(object)
	if !ok {
		return nil
	}
	rev, err := version(o.GetResourceVersion())
	if err != nil {
		return err
	}
	name := o.GetName()
	h := m.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	last, known := m.objs[name]
	if !known {
		if last, known = m.record(obj); !known {
			return nil
		}
	}
	delete(m.objs, name)
	delete(m.recent, name)
	m.applied = max(m.applied, rev)
	h.publishLocked(store.Event{Type: store.Deleted, Kind: m.kind, Object: last.rec, Revision: rev})
	h.broadcastLocked()
	return nil
}

// Replace implements cache.ReflectorStore: the reflector (re)listed the
// kind at rv. The first list fills the mirror; a later one, made after
// the watch fell too far behind, is told to the watches as the changes
// that turn the old contents into the new, all at rv.
func (m *mirror) Replace(list []any, rv string) error {
	rev, err := version(rv)
	if err != nil {
		return err
	}
	objs := make(map[string]entry, len(list))
	for _, obj := range list {
		if e, ok := m.record(obj); ok {
			objs[e.obj.GetName()] = e
		}
	}
	h := m.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.synced {
		for name, old := range m.objs {
			if _, ok := objs[name]; !ok {
				h.publishLocked(store.Event{Type: store.Deleted, Kind: m.kind, Object: old.rec, Revision: rev})
			}
		}
		for name, e := range objs {
			if old, ok := m.objs[name]; !ok || old.version != e.version {
				h.publishLocked(store.Event{Type: store.Put, Kind: m.kind, Object: e.rec, Revision: rev})
			}
		}
	}
	m.objs, m.synced = objs, true
	m.applied = max(m.applied, rev)
	h.broadcastLocked()
	return nil
}

// Resync implements cache.ReflectorStore; the mirror has nothing to redo.
func (m *mirror) Resync() error { return nil }

// UpdateResourceVersion implements cache.ResourceVersionUpdater: the watch
// got to rv, with or without a change of this kind (a bookmark).
func (m *mirror) UpdateResourceVersion(rv string) {
	rev, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return
	}
	h := m.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev > m.applied {
		m.applied = rev
		h.broadcastLocked()
	}
}

// at returns the object if the mirror or the store's last write has it at
// version; newer is true when either has a later version, which dooms a
// write at version.
func (m *mirror) at(name string, version uint64) (obj object, newer bool) {
	m.hub.mu.Lock()
	defer m.hub.mu.Unlock()
	for _, e := range []entry{m.recent[name], m.objs[name]} {
		switch {
		case e.obj == nil:
		case e.version > version:
			return nil, true
		case e.version == version:
			obj = e.obj
		}
	}
	return obj, false
}

// wrote notes the store's own write.
func (m *mirror) wrote(name string, obj object, version uint64) {
	m.hub.mu.Lock()
	defer m.hub.mu.Unlock()
	m.written = max(m.written, version)
	if e, ok := m.objs[name]; !ok || e.version < version {
		m.recent[name] = entry{obj: obj, version: version}
	}
}

// deleted notes the store's own delete of the object at version (0: the
// version the mirror has).
func (m *mirror) deleted(name string, version uint64) {
	m.hub.mu.Lock()
	defer m.hub.mu.Unlock()
	delete(m.recent, name)
	if e, ok := m.objs[name]; ok {
		m.deleting[name] = max(version, e.version)
	}
}

// caughtUpLocked tells whether the mirror holds the store's own writes.
func (m *mirror) caughtUpLocked() bool {
	if !m.synced || m.applied < m.written {
		return false
	}
	for name, v := range m.deleting {
		if e, ok := m.objs[name]; !ok || e.version > v {
			delete(m.deleting, name)
		}
	}
	return len(m.deleting) == 0
}

// list returns copies of the records and the revision they are at.
func (m *mirror) listLocked() ([]store.Object, uint64) {
	out := make([]store.Object, 0, len(m.objs))
	for _, e := range m.objs {
		out = append(out, proto.Clone(e.rec).(store.Object))
	}
	return out, m.applied
}

// setMeta puts meta into rec's metadata field, which every record has.
func setMeta(rec store.Object, meta proto.Message) {
	r := rec.ProtoReflect()
	r.Set(r.Descriptor().Fields().ByName("metadata"), protoreflect.ValueOfMessage(meta.ProtoReflect()))
}
