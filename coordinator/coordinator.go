// Package coordinator is jumpmesh's control plane: it keeps exporters,
// clients, leases and access policies in a store, schedules leases, tracks
// which exporters are online, signs tokens, and serves its API over HTTPS
// with connectrpc (gRPC, gRPC-Web and Connect).
//
// Every write is a compare-and-swap on the store, so several coordinators
// sharing one store never give an exporter to two leases; the in-memory
// cache only makes reads fast.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
)

// Config tunes a coordinator. Zero fields take the defaults below.
type Config struct {
	Store store.Store
	// Where clients reach this coordinator and the certificate to trust,
	// for the configs admins hand out.
	Endpoint *coordinatorv1.Endpoint
	// Relay is the mesh relay clients and exporters meet at; nil hands out
	// none, and clients cannot reach exporters.
	Relay *coordinatorv1.RelayEndpoint
	// Issuer of its tokens; tokens of another issuer are refused.
	Issuer string
	// Exporters send a heartbeat this often; missing MissedHeartbeats in a
	// row takes one offline.
	HeartbeatInterval time.Duration
	MissedHeartbeats  int
	// A ready lease survives its exporter being offline this long.
	ExporterGrace time.Duration
	// A preempted spot lease runs this long after notice.
	PreemptionNotice time.Duration
	// Ended leases stay listed this long.
	LeaseHistory time.Duration
	// For leases that give neither a duration nor an end.
	DefaultDuration time.Duration
	// Session tokens expire after this, or with their lease if sooner.
	SessionTTL time.Duration
	// Identity tokens (admin, client, exporter) expire after this.
	TokenLifetime time.Duration
	// A new signing key is made when the current one is this old.
	KeyRotation time.Duration
	Logger      *slog.Logger
	Metrics     *Metrics
}

// Defaults, each with its reason.
const (
	// Jumpstarter's exporters report every 10 s; three missed reports is
	// long enough to ride out a slow network, short enough to notice a
	// dead exporter within half a minute.
	defaultHeartbeat        = 10 * time.Second
	defaultMissedHeartbeats = 3
	// Long enough for an exporter to restart or a coordinator to come back.
	defaultExporterGrace = 2 * time.Minute
	// Enough for a spot user's script to save its work.
	defaultPreemptionNotice = 30 * time.Second
	// A day of history answers "what happened to my lease last night".
	defaultLeaseHistory = 24 * time.Hour
	// Jumpstarter's default lease.
	defaultDuration = 30 * time.Minute
	// Short: a session token only has to open one connection.
	defaultSessionTTL = 10 * time.Minute
	// A year, as Jumpstarter's; admins rotate or delete identities to revoke.
	defaultTokenLifetime = 365 * 24 * time.Hour
	defaultKeyRotation   = 30 * 24 * time.Hour
	// maxAttempts bounds compare-and-swap retries of one write.
	maxAttempts = 8
)

func (c *Config) setDefaults() {
	setDefault(&c.HeartbeatInterval, defaultHeartbeat)
	if c.MissedHeartbeats <= 0 {
		c.MissedHeartbeats = defaultMissedHeartbeats
	}
	setDefault(&c.ExporterGrace, defaultExporterGrace)
	if c.PreemptionNotice < 0 {
		c.PreemptionNotice = 0
	} else if c.PreemptionNotice == 0 {
		c.PreemptionNotice = defaultPreemptionNotice
	}
	setDefault(&c.LeaseHistory, defaultLeaseHistory)
	setDefault(&c.DefaultDuration, defaultDuration)
	setDefault(&c.SessionTTL, defaultSessionTTL)
	setDefault(&c.TokenLifetime, defaultTokenLifetime)
	setDefault(&c.KeyRotation, defaultKeyRotation)
	if c.Issuer == "" {
		c.Issuer = "jumpmesh"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Coordinator is the control plane over one store.
type Coordinator struct {
	cfg   Config
	st    store.Store
	log   *slog.Logger
	keys  *token.Keyring
	cache *cache
	m     *Metrics

	// queue is where each pending lease stood after the last scheduling
	// pass: the number of leases ahead of it.
	queue atomic.Pointer[map[string]int32]

	kick     chan struct{} // wakes the scheduler
	keysCh   chan struct{} // signing keys changed
	presence chan struct{} // an exporter came or went, for sweepStale
	// streams holds the sessions of the status streams this coordinator
	// serves.
	streams sync.Map
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New loads the store into memory and starts the scheduler. Close stops it.
func New(ctx context.Context, cfg Config) (*Coordinator, error) {
	if cfg.Store == nil {
		return nil, errors.New("coordinator: no store")
	}
	cfg.setDefaults()
	c := &Coordinator{
		cfg:      cfg,
		st:       cfg.Store,
		log:      cfg.Logger,
		keys:     token.NewKeyring(cfg.Issuer),
		m:        cfg.Metrics,
		kick:     make(chan struct{}, 1),
		keysCh:   make(chan struct{}, 1),
		presence: make(chan struct{}, 1),
	}
	c.cache = newCache(c.changed)
	rev, err := c.load(ctx)
	if err != nil {
		return nil, err
	}
	events, err := c.st.Watch(context.WithoutCancel(ctx), rev)
	if err != nil {
		return nil, fmt.Errorf("watch store: %w", err)
	}
	c.reloadKeys()
	if err := c.ensureSigningKey(ctx); err != nil {
		return nil, err
	}
	c.m.register(c)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Go(func() { c.follow(runCtx, events) })
	c.wg.Go(func() { c.scheduleLoop(runCtx) })
	c.wg.Go(func() { c.keyLoop(runCtx) })
	c.wg.Go(func() { c.sweepStale(runCtx) })
	return c, nil
}

// Close stops the background work. It does not close the store.
func (c *Coordinator) Close() {
	c.cancel()
	c.wg.Wait()
}

// load fills the cache from the store and returns the oldest revision
// listed, to watch from.
func (c *Coordinator) load(ctx context.Context) (uint64, error) {
	var from uint64
	for i, kind := range store.Kinds {
		objs, rev, err := c.st.List(ctx, kind)
		if err != nil {
			return 0, fmt.Errorf("load %s: %w", kind, err)
		}
		if i == 0 || rev < from {
			from = rev
		}
		for _, o := range objs {
			c.cache.put(o)
		}
	}
	return from, nil
}

// follow applies the store's changes to the cache. The watch stops only
// when the coordinator closes.
func (c *Coordinator) follow(ctx context.Context, events <-chan store.Event) {
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch ev.Type {
			case store.Put:
				c.cache.put(ev.Object)
			case store.Deleted:
				c.cache.remove(ev.Kind, ev.Object.GetMetadata().GetName(), ev.Revision, false)
			}
		case <-ctx.Done():
			return
		}
	}
}

// changed is called after every cache change.
func (c *Coordinator) changed(kind store.Kind) {
	switch kind {
	case store.SigningKeys:
		signal(c.keysCh)
	case store.Admins:
	case store.Exporters:
		signal(c.kick)
		signal(c.presence)
	default:
		signal(c.kick)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// update applies fn to a copy of the named record and writes it with
// compare-and-swap, retrying on conflict with the store's latest copy. fn
// returns errNoChange to write nothing, or another error to give up. It
// starts from the cache, which may lag the store (another coordinator's
// writes): a verdict of fn on a cached copy (no change, or an error) is
// checked again on the store's copy before it stands.
func update[T store.Object](ctx context.Context, c *Coordinator, kind store.Kind, name string, fn func(T) error) (T, error) {
	var zero T
	cur, fresh := c.cache.get(kind, name), false
	for attempt := 1; ; attempt++ {
		if cur == nil && !fresh {
			cur, fresh = c.fetch(ctx, kind, name)
		}
		if cur == nil {
			return zero, fmt.Errorf("%s %s: %w", kindNoun(kind), name, store.ErrNotFound)
		}
		obj := cloneObject(cur).(T)
		err := fn(obj)
		if err != nil && !fresh {
			cur, fresh = c.fetch(ctx, kind, name)
			continue
		}
		if errors.Is(err, errNoChange) {
			return cur.(T), nil
		} else if err != nil {
			return zero, err
		}
		err = c.st.Update(ctx, obj)
		if err == nil {
			c.cache.put(obj)
			return obj, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= maxAttempts {
			return zero, err
		}
		c.m.conflicts.Inc()
		cur, fresh = c.fetch(ctx, kind, name)
	}
}

// fetch reads a record from the store; nil if it is gone or unreadable
// (a failed read shows up as the write failing after).
func (c *Coordinator) fetch(ctx context.Context, kind store.Kind, name string) (store.Object, bool) {
	obj, err := c.st.Get(ctx, kind, name)
	if err != nil {
		return nil, true
	}
	return obj, true
}

// errNoChange tells update that the record already is as wanted.
var errNoChange = errors.New("no change")

func kindNoun(k store.Kind) string {
	switch k {
	case store.Exporters:
		return "exporter"
	case store.Clients:
		return "client"
	case store.Admins:
		return "admin"
	case store.Leases:
		return "lease"
	case store.Policies:
		return "access policy"
	case store.SigningKeys:
		return "signing key"
	}
	return string(k)
}

// create writes a new record and caches it.
func (c *Coordinator) create(ctx context.Context, obj store.Object) error {
	if err := c.st.Create(ctx, obj); err != nil {
		return err
	}
	c.cache.put(obj)
	return nil
}

// remove deletes a record at the version cached and drops it from the cache.
func (c *Coordinator) remove(ctx context.Context, obj store.Object) error {
	kind, name, version := store.KindOf(obj), obj.GetMetadata().GetName(), obj.GetMetadata().GetResourceVersion()
	if err := c.st.Delete(ctx, kind, name, version); err != nil {
		return err
	}
	c.cache.remove(kind, name, version, true)
	return nil
}

func newMeta(name string, labels map[string]string, now time.Time) *coordinatorv1.ObjectMeta {
	return &coordinatorv1.ObjectMeta{Name: name, Labels: labels, CreateTime: timestamp(now)}
}
