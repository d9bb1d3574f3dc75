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
	window := c.cfg.HeartbeatInterval * time.Duration(c.cfg.MissedHeartbeats)
	timer := time.NewTimer(window)
	defer timer.Stop()

	var sent *coordinatorv1.LeaseAssignment
	first := true
	for {
		e := c.cache.exporter(name)
		if e == nil {
			return unauthenticated(fmt.Sprintf("exporter %s was deleted by an admin", name))
		}
		if resp := c.statusFor(e, sent); first || !proto.Equal(resp.GetLease(), sent) {
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
		case <-changed:
		case <-timer.C:
			return connect.NewError(connect.CodeDeadlineExceeded,
				fmt.Errorf("no heartbeat from exporter %s for %v; taking it offline", name, window))
		case <-ctx.Done():
			return nil
		}
	}
}

// statusFor is what exporter e should hear: the lease it serves, and the
// one it served before (sent) if that has ended.
func (c *Coordinator) statusFor(e *coordinatorv1.Exporter, sent *coordinatorv1.LeaseAssignment) *coordinatorv1.StatusResponse {
	resp := &coordinatorv1.StatusResponse{HeartbeatInterval: durationpb.New(c.cfg.HeartbeatInterval)}
	if l := c.cache.lease(e.GetLease()); l != nil && l.GetStatus().GetState() == coordinatorv1.LeaseState_LEASE_STATE_READY &&
		l.GetStatus().GetExporter() == e.GetMetadata().GetName() {
		resp.Lease = &coordinatorv1.LeaseAssignment{
			Name:    l.GetMetadata().GetName(),
			Client:  l.GetSpec().GetClient(),
			EndTime: l.GetStatus().GetEndTime(),
			Reason:  l.GetStatus().GetReason(),
		}
	}
	if sent != nil && resp.GetLease().GetName() != sent.GetName() {
		resp.Ended = &coordinatorv1.EndedLease{Name: sent.GetName(), Client: sent.GetClient(), Message: "deleted"}
		if l := c.cache.lease(sent.GetName()); l != nil {
			resp.Ended.Reason, resp.Ended.Message = l.GetStatus().GetReason(), l.GetStatus().GetMessage()
		}
	}
	return resp
}

// markOffline takes an exporter offline if the status stream session
// still holds it online: a newer stream of the same exporter wins.
func (c *Coordinator) markOffline(ctx context.Context, name, session string) {
	took := false
	_, err := update(ctx, c, store.Exporters, name, func(e *coordinatorv1.Exporter) error {
		if took = e.GetSessionId() == session; !took {
			return errNoChange
		}
		e.Online, e.SessionId, e.LastSeen = false, "", timestamp(time.Now())
		return nil
	})
	switch {
	case err != nil && !errors.Is(err, store.ErrNotFound):
		c.log.Warn("mark exporter offline", "exporter", name, "err", err)
	case err == nil && took:
		c.log.Info("exporter offline", "exporter", name)
	}
}

// sweepStale takes offline the exporters a previous coordinator left
// online, unless they reconnect within a heartbeat window.
func (c *Coordinator) sweepStale(ctx context.Context) {
	stale := map[string]string{}
	c.cache.mu.RLock()
	for name, e := range c.cache.exporters {
		if e.GetOnline() {
			stale[name] = e.GetSessionId()
		}
	}
	c.cache.mu.RUnlock()
	if len(stale) == 0 {
		return
	}
	timer := time.NewTimer(c.cfg.HeartbeatInterval * time.Duration(c.cfg.MissedHeartbeats))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return
	}
	for name, session := range stale {
		c.markOffline(ctx, name, session)
	}
}
