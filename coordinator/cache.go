package coordinator

import (
	"fmt"
	"maps"
	"sync"

	"github.com/jumpmesh/jumpmesh/coordinator/scheduler"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// cache mirrors the store in memory, fed by the store's watch and by the
// coordinator's own writes as they succeed. Records in it are never
// modified: a change replaces the record, so readers may keep what they
// got. It wakes whoever waits on a record that changed.
type cache struct {
	mu        sync.RWMutex
	exporters map[string]*coordinatorv1.Exporter
	clients   map[string]*coordinatorv1.Client
	admins    map[string]*coordinatorv1.Admin
	leases    map[string]*leaseEntry
	policies  map[string]*policyEntry
	keys      map[string]*coordinatorv1.SigningKey
	// keysDirty: the signing keys changed since signingKeys returned them.
	keysDirty bool
	// tombstones hold the revisions of this coordinator's own deletes until
	// the watch has passed them, so a late event cannot bring a deleted
	// record back.
	tombstones map[string]uint64

	waiters map[string]map[chan struct{}]struct{}
	// onChange is called, without the lock, after any change.
	onChange func(kind store.Kind)
}

// leaseEntry keeps a lease with its parsed selector.
type leaseEntry struct {
	obj      *coordinatorv1.Lease
	selector labels.Selector // nil for a named exporter
}

type policyEntry struct {
	obj    *coordinatorv1.AccessPolicy
	parsed scheduler.Policy
}

func newCache(onChange func(store.Kind)) *cache {
	return &cache{
		exporters:  map[string]*coordinatorv1.Exporter{},
		clients:    map[string]*coordinatorv1.Client{},
		admins:     map[string]*coordinatorv1.Admin{},
		leases:     map[string]*leaseEntry{},
		policies:   map[string]*policyEntry{},
		keys:       map[string]*coordinatorv1.SigningKey{},
		waiters:    map[string]map[chan struct{}]struct{}{},
		tombstones: map[string]uint64{},
		onChange:   onChange,
	}
}

// waitKey names what a waiter watches: a lease, or an exporter together
// with the lease it serves.
func leaseKey(name string) string    { return "lease/" + name }
func exporterKey(name string) string { return "exporter/" + name }

// subscribe returns a channel that receives after each change to key, and
// a function to stop.
func (c *cache) subscribe(key string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.waiters[key] == nil {
		c.waiters[key] = map[chan struct{}]struct{}{}
	}
	c.waiters[key][ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.waiters[key], ch)
		if len(c.waiters[key]) == 0 {
			delete(c.waiters, key)
		}
		c.mu.Unlock()
	}
}

// wakeLocked signals the waiters on keys; c.mu is held.
func (c *cache) wakeLocked(keys ...string) {
	for _, key := range keys {
		for ch := range c.waiters[key] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// put stores obj if it is newer than the record cached. It returns false
// for a stale copy.
func (c *cache) put(obj store.Object) bool {
	kind := store.KindOf(obj)
	name := obj.GetMetadata().GetName()
	version := obj.GetMetadata().GetResourceVersion()
	c.mu.Lock()
	if cur := c.getLocked(kind, name); cur != nil && cur.GetMetadata().GetResourceVersion() >= version ||
		c.tombstones[string(kind)+"/"+name] >= version {
		c.mu.Unlock()
		return false
	}
	notify := true
	switch o := obj.(type) {
	case *coordinatorv1.Exporter:
		notify = schedulingChange(c.exporters[name], o)
		c.exporters[name] = o
		c.wakeLocked(exporterKey(name))
	case *coordinatorv1.Client:
		c.clients[name] = o
	case *coordinatorv1.Admin:
		c.admins[name] = o
	case *coordinatorv1.Lease:
		old := c.leases[name]
		c.leases[name] = newLeaseEntry(o)
		c.wakeLocked(leaseKey(name), exporterKey(o.GetStatus().GetExporter()))
		if old != nil && old.obj.GetStatus().GetExporter() != o.GetStatus().GetExporter() {
			c.wakeLocked(exporterKey(old.obj.GetStatus().GetExporter()))
		}
	case *coordinatorv1.AccessPolicy:
		c.policies[name] = newPolicyEntry(o)
	case *coordinatorv1.SigningKey:
		c.keys[name] = o
		c.keysDirty = true
	}
	c.mu.Unlock()
	if notify {
		c.onChange(kind)
	}
	return true
}

// schedulingChange tells whether the scheduler could decide differently
// after an exporter changed from old to cur. The refresh of a live
// exporter's last_seen, every heartbeat interval, is no such change: the
// scheduler reads last_seen only of exporters offline.
func schedulingChange(old, cur *coordinatorv1.Exporter) bool {
	return old == nil || old.GetOnline() != cur.GetOnline() || old.GetLease() != cur.GetLease() ||
		!maps.Equal(old.GetMetadata().GetLabels(), cur.GetMetadata().GetLabels()) ||
		!cur.GetOnline() && !old.GetLastSeen().AsTime().Equal(cur.GetLastSeen().AsTime())
}

// remove drops a record deleted at revision rev, unless a newer one
// replaced it. own is true for the coordinator's own deletes, false for
// the watch's.
func (c *cache) remove(kind store.Kind, name string, rev uint64, own bool) {
	c.mu.Lock()
	tomb := string(kind) + "/" + name
	if own {
		c.tombstones[tomb] = max(c.tombstones[tomb], rev)
	} else if c.tombstones[tomb] <= rev {
		delete(c.tombstones, tomb)
	}
	cur := c.getLocked(kind, name)
	if cur == nil || cur.GetMetadata().GetResourceVersion() > rev {
		c.mu.Unlock()
		return
	}
	switch kind {
	case store.Exporters:
		delete(c.exporters, name)
		c.wakeLocked(exporterKey(name))
	case store.Clients:
		delete(c.clients, name)
	case store.Admins:
		delete(c.admins, name)
	case store.Leases:
		e := c.leases[name]
		delete(c.leases, name)
		c.wakeLocked(leaseKey(name), exporterKey(e.obj.GetStatus().GetExporter()))
	case store.Policies:
		delete(c.policies, name)
	case store.SigningKeys:
		delete(c.keys, name)
		c.keysDirty = true
	}
	c.mu.Unlock()
	c.onChange(kind)
}

func (c *cache) getLocked(kind store.Kind, name string) store.Object {
	switch kind {
	case store.Exporters:
		if o, ok := c.exporters[name]; ok {
			return o
		}
	case store.Clients:
		if o, ok := c.clients[name]; ok {
			return o
		}
	case store.Admins:
		if o, ok := c.admins[name]; ok {
			return o
		}
	case store.Leases:
		if e, ok := c.leases[name]; ok {
			return e.obj
		}
	case store.Policies:
		if e, ok := c.policies[name]; ok {
			return e.obj
		}
	case store.SigningKeys:
		if o, ok := c.keys[name]; ok {
			return o
		}
	}
	return nil
}

// get returns the cached record, or nil.
func (c *cache) get(kind store.Kind, name string) store.Object {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.getLocked(kind, name)
}

func (c *cache) exporter(name string) *coordinatorv1.Exporter {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.exporters[name]
}

func (c *cache) lease(name string) *coordinatorv1.Lease {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.leases[name]; e != nil {
		return e.obj
	}
	return nil
}

// signingKeys returns the keys if they changed since the last call.
func (c *cache) signingKeys() ([]*coordinatorv1.SigningKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.keysDirty {
		return nil, false
	}
	c.keysDirty = false
	keys := make([]*coordinatorv1.SigningKey, 0, len(c.keys))
	for _, k := range c.keys {
		keys = append(keys, k)
	}
	return keys, true
}

func newLeaseEntry(l *coordinatorv1.Lease) *leaseEntry {
	e := &leaseEntry{obj: l}
	if s := l.GetSpec().GetSelector(); s != "" {
		// Selectors were checked when the lease was created; one that no
		// longer parses matches nothing rather than everything.
		sel, err := labels.Parse(s)
		if err != nil {
			sel = labels.Nothing()
		}
		e.selector = sel
	} else if l.GetSpec().GetExporter() == "" {
		e.selector = labels.Everything()
	}
	return e
}

func newPolicyEntry(p *coordinatorv1.AccessPolicy) *policyEntry {
	parsed, err := parsePolicy(p)
	if err != nil {
		// Checked when applied; an unreadable stored policy grants nothing.
		parsed = scheduler.Policy{Name: p.GetMetadata().GetName(), Exporters: labels.Everything()}
	}
	return &policyEntry{obj: p, parsed: parsed}
}

// parsePolicy parses a policy's selectors.
func parsePolicy(p *coordinatorv1.AccessPolicy) (scheduler.Policy, error) {
	exporters, err := labels.Parse(p.GetExporterSelector())
	if err != nil {
		return scheduler.Policy{}, fmt.Errorf("exporter selector %q: %w", p.GetExporterSelector(), err)
	}
	out := scheduler.Policy{Name: p.GetMetadata().GetName(), Exporters: exporters}
	for i, r := range p.GetRules() {
		clients, err := labels.Parse(r.GetClientSelector())
		if err != nil {
			return scheduler.Policy{}, fmt.Errorf("rule %d: client selector %q: %w", i+1, r.GetClientSelector(), err)
		}
		if r.GetMaximumDuration().AsDuration() < 0 {
			return scheduler.Policy{}, fmt.Errorf("rule %d: maximum duration is negative", i+1)
		}
		out.Rules = append(out.Rules, scheduler.Rule{
			Clients:     clients,
			Priority:    r.GetPriority(),
			MaxDuration: r.GetMaximumDuration().AsDuration(),
			Preemptible: r.GetPreemptible(),
		})
	}
	return out, nil
}
