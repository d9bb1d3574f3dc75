package coordinator

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Register records an exporter's driver tree and mesh key.
func (c *Coordinator) Register(ctx context.Context, name string, report *jumpmeshv1.Report, pub []byte) (*coordinatorv1.Exporter, error) {
	if len(pub) != 0 && len(pub) != ed25519.PublicKeySize {
		return nil, invalid(fmt.Sprintf("public key must be %d bytes of Ed25519, got %d", ed25519.PublicKeySize, len(pub)))
	}
	report = proto.CloneOf(report)
	if report == nil {
		report = &jumpmeshv1.Report{}
	}
	report.Name = name
	e, err := update(ctx, c, store.Exporters, name, func(e *coordinatorv1.Exporter) error {
		e.Report = report
		e.PublicKey = pub
		return nil
	})
	if err != nil {
		return nil, asConnect("register exporter", err)
	}
	return presentExporter(e), nil
}

// HeartbeatInterval is how often exporters must send heartbeats.
func (c *Coordinator) HeartbeatInterval() time.Duration { return c.cfg.HeartbeatInterval }

// ServeStatus holds exporter name online for as long as recv keeps
// returning heartbeats in time, and sends it its lease assignment now and
// after each change. recv blocks for the next heartbeat; it returns io.EOF
// when the exporter closes the stream.
func (c *Coordinator) ServeStatus(ctx context.Context, name string, recv func() error,
	send func(*coordinatorv1.StatusResponse) error) error {
	session := randomName() + randomName()
	c.streams.Store(session, struct{}{})
	defer c.streams.Delete(session)
	now := time.Now()
	if _, err := update(ctx, c, store.Exporters, name, func(e *coordinatorv1.Exporter) error {
		e.Online, e.SessionId, e.LastSeen = true, session, timestamp(now)
		return nil
	}); err != nil {
		return asConnect("mark exporter online", err)
	}
	c.log.Info("exporter online", "exporter", name)
	defer c.markOffline(context.WithoutCancel(ctx), name, session)

	done := make(chan struct{})
	defer close(done)
	beats := make(chan error, 1)
	go func() {
		for {
			err := recv()
			select {
			case beats <- err:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	changed, stop := c.cache.subscribe(exporterKey(name))
	defer stop()
	window := c.window()
	timer := time.NewTimer(window)
	defer timer.Stop()
	refresh := time.NewTicker(c.cfg.HeartbeatInterval)
	defer refresh.Stop()

	var sent *coordinatorv1.LeaseAssignment
	given := grants{}
	first := true
	for {
		e := c.cache.exporter(name)
		if e == nil {
			return unauthenticated(fmt.Sprintf("exporter %s was deleted by an admin", name))
		}
		resp, l := c.statusFor(e, sent)
		resp.SessionTokens = c.sessionTokens(name, l, given)
		if first || !proto.Equal(resp.GetLease(), sent) || len(resp.SessionTokens) > 0 {
			if err := send(resp); err != nil {
				return err
			}
			sent, first = resp.GetLease(), false
		}
		select {
		case err := <-beats:
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			timer.Reset(window)
		case <-refresh.C:
			c.refreshOnline(ctx, name, session)
		case <-changed:
		case <-timer.C:
			return connect.NewError(connect.CodeDeadlineExceeded,
				fmt.Errorf("no heartbeat from exporter %s for %v; taking it offline", name, window))
		case <-ctx.Done():
			return nil
		}
	}
}

// statusFor is what exporter e should hear: the lease it serves (also
// returned, nil for none), and the one it served before (sent) if that has
// ended.
func (c *Coordinator) statusFor(e *coordinatorv1.Exporter, sent *coordinatorv1.LeaseAssignment) (*coordinatorv1.StatusResponse, *coordinatorv1.Lease) {
	resp := &coordinatorv1.StatusResponse{HeartbeatInterval: durationpb.New(c.cfg.HeartbeatInterval)}
	l := c.cache.lease(e.GetLease())
	if l != nil && l.GetStatus().GetState() == coordinatorv1.LeaseState_LEASE_STATE_READY &&
		l.GetStatus().GetExporter() == e.GetMetadata().GetName() {
		resp.Lease = &coordinatorv1.LeaseAssignment{
			Name:    l.GetMetadata().GetName(),
			Client:  l.GetSpec().GetClient(),
			EndTime: l.GetStatus().GetEndTime(),
			Reason:  l.GetStatus().GetReason(),
		}
	} else {
		l = nil
	}
	if sent != nil && resp.GetLease().GetName() != sent.GetName() {
		resp.Ended = &coordinatorv1.EndedLease{Name: sent.GetName(), Client: sent.GetClient(), Message: "deleted"}
		if old := c.cache.lease(sent.GetName()); old != nil {
			resp.Ended.Reason, resp.Ended.Message = old.GetStatus().GetReason(), old.GetStatus().GetMessage()
		}
	}
	return resp, l
}

// window is how long an exporter stays online without news of it.
func (c *Coordinator) window() time.Duration {
	return c.cfg.HeartbeatInterval * time.Duration(c.cfg.MissedHeartbeats)
}

// refreshOnline records in the store that the status stream session still
// holds the exporter online, so that every coordinator sharing the store
// sees it live (see sweepStale). It takes the exporter back if another
// coordinator took it offline meanwhile (its refreshes were late), but
// leaves it to a newer stream of the same exporter.
func (c *Coordinator) refreshOnline(ctx context.Context, name, session string) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HeartbeatInterval)
	defer cancel()
	var back bool
	_, err := update(ctx, c, store.Exporters, name, func(e *coordinatorv1.Exporter) error {
		back = false
		if s := e.GetSessionId(); s != session && s != "" {
			return errNoChange
		}
		back = !e.GetOnline()
		e.Online, e.SessionId, e.LastSeen = true, session, timestamp(time.Now())
		return nil
	})
	switch {
	case err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrNotFound):
		c.log.Warn("record exporter online", "exporter", name, "err", err)
	case err == nil && back:
		c.log.Info("exporter online again", "exporter", name)
	}
}

// markOffline takes an exporter offline if the status stream session
// still holds it online: a newer stream of the same exporter wins.
func (c *Coordinator) markOffline(ctx context.Context, name, session string) {
	if c.takeOffline(ctx, name, func(e *coordinatorv1.Exporter) bool { return e.GetSessionId() == session }) {
		c.log.Info("exporter offline", "exporter", name)
	}
}

// takeOffline takes an exporter offline if it is online and still(e) is
// true of the store's copy, and tells whether it did.
func (c *Coordinator) takeOffline(ctx context.Context, name string, still func(*coordinatorv1.Exporter) bool) bool {
	took := false
	_, err := update(ctx, c, store.Exporters, name, func(e *coordinatorv1.Exporter) error {
		if took = e.GetOnline() && still(e); !took {
			return errNoChange
		}
		e.Online, e.SessionId, e.LastSeen = false, "", timestamp(time.Now())
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Warn("mark exporter offline", "exporter", name, "err", err)
		return false
	}
	return err == nil && took
}

// sweepStale takes offline, until ctx ends, the exporters no coordinator
// has vouched for within the heartbeat window. The coordinator holding an
// exporter's status stream refreshes its last_seen every heartbeat
// interval (refreshOnline), so last_seen stays within one interval and the
// store's latency of now for as long as the stream lives, on whichever
// coordinator sharing the store holds it; an exporter whose coordinator
// died, or that a previous run of this one left online, falls behind and
// is swept. Nothing is judged older than this coordinator's start: an
// exporter gets a whole window to reconnect after a coordinator was down.
// Exporters whose stream this coordinator holds are left to the stream's
// own heartbeat timer, however slow the store is to take refreshes.
func (c *Coordinator) sweepStale(ctx context.Context) {
	started := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-c.presence:
		case <-ctx.Done():
			return
		}
		timer.Stop()
		if next := c.sweepOnce(ctx, started); !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// sweepOnce takes offline the exporters stale now and returns when the
// next one would turn stale; zero if none is online.
func (c *Coordinator) sweepOnce(ctx context.Context, started time.Time) (next time.Time) {
	now := time.Now()
	type seen struct {
		session string
		at      time.Time
	}
	stale := map[string]seen{}
	c.cache.mu.RLock()
	for name, e := range c.cache.exporters {
		if _, held := c.streams.Load(e.GetSessionId()); !e.GetOnline() || held {
			continue
		}
		at := e.GetLastSeen().AsTime()
		from := at
		if from.Before(started) {
			from = started
		}
		if deadline := from.Add(c.window()); now.Before(deadline) {
			if next.IsZero() || deadline.Before(next) {
				next = deadline
			}
			continue
		}
		stale[name] = seen{session: e.GetSessionId(), at: at}
	}
	c.cache.mu.RUnlock()
	for name, s := range stale {
		// Only if no refresh came since: the store's copy decides.
		if c.takeOffline(ctx, name, func(e *coordinatorv1.Exporter) bool {
			return e.GetSessionId() == s.session && e.GetLastSeen().AsTime().Equal(s.at)
		}) {
			c.log.Info("exporter offline: no coordinator heard from it", "exporter", name, "window", c.window())
		}
	}
	return next
}
