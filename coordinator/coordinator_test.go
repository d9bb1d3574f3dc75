package coordinator

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	pending = coordinatorv1.LeaseState_LEASE_STATE_PENDING
	ready   = coordinatorv1.LeaseState_LEASE_STATE_READY
	ended   = coordinatorv1.LeaseState_LEASE_STATE_ENDED
)

var rpi4 = map[string]string{"board": "rpi4"}

func requireCode(t testing.TB, err error, code connect.Code) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, connect.CodeOf(err), "error: %v", err)
}

func TestLeaseLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice := h.client("alice", nil)
		h.client("bob", nil)
		h.exporter("e1", rpi4)
		f := h.connect("e1", true)
		defer f.drop(t)
		synctest.Wait()

		l := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4", Duration: minutes(30), Tags: map[string]string{"ci": "yes"}})
		require.Equal(t, pending, l.Status.State)
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_QUEUED, l.Status.Reason)
		synctest.Wait()
		name := l.Metadata.Name
		l = h.get(alice, name)
		require.Equal(t, ready, l.Status.State)
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_ACQUIRED, l.Status.Reason)
		require.Equal(t, "e1", l.Status.Exporter)
		require.Equal(t, 30*time.Minute, l.Status.EndTime.AsTime().Sub(l.Status.BeginTime.AsTime()))
		require.Equal(t, name, f.last(t).GetLease().GetName(), "the exporter learns its lease")

		// Extend: the exporter hears the new end.
		l, err := h.c.UpdateLease(context.Background(), alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_Extend{Extend: minutes(30)}})
		require.NoError(t, err)
		end := l.Status.EndTime.AsTime()
		require.Equal(t, time.Hour, end.Sub(l.Status.BeginTime.AsTime()))
		synctest.Wait()
		require.True(t, f.last(t).GetLease().GetEndTime().AsTime().Equal(end))

		// Bob can neither see nor end it.
		bob := Identity{Kind: token.Client, Name: "bob"}
		_, err = h.c.GetLease(context.Background(), bob, name)
		requireCode(t, err, connect.CodeNotFound)
		_, err = h.c.DeleteLease(context.Background(), bob, name)
		requireCode(t, err, connect.CodeNotFound)
		list, err := h.c.ListLeases(bob, "", true)
		require.NoError(t, err)
		require.Empty(t, list)
		list, err = h.c.ListLeases(alice, "ci=yes", false)
		require.NoError(t, err)
		require.Len(t, list, 1)

		// The coordinator's clock ends it, and tells the exporter.
		time.Sleep(time.Until(end))
		synctest.Wait()
		l = h.get(alice, name)
		require.Equal(t, ended, l.Status.State)
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_EXPIRED, l.Status.Reason)
		require.Nil(t, f.last(t).GetLease())
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_EXPIRED, f.ended(t, name).GetReason())
		e, err := h.c.GetExporter("e1")
		require.NoError(t, err)
		require.Equal(t, coordinatorv1.ExporterStatus_EXPORTER_STATUS_AVAILABLE, e.Status)

		// Ended leases are listed with --all, then forgotten.
		list, err = h.c.ListLeases(alice, "", false)
		require.NoError(t, err)
		require.Empty(t, list)
		time.Sleep(testConfig.LeaseHistory)
		synctest.Wait()
		_, err = h.c.GetLease(context.Background(), alice, name)
		requireCode(t, err, connect.CodeNotFound)
	})
}

func TestQueueOrderAndRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice := h.client("alice", nil)
		h.exporter("e1", rpi4)
		f := h.connect("e1", true)
		defer f.drop(t)
		synctest.Wait()

		var names []string
		for range 3 {
			names = append(names, h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1"}).Metadata.Name)
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		require.Equal(t, ready, h.get(alice, names[0]).Status.State)
		second := h.get(alice, names[1])
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_ALL_BUSY, second.Status.Reason)
		require.Equal(t, int32(0), second.Status.QueuePosition)
		require.Equal(t, int32(1), h.get(alice, names[2]).Status.QueuePosition)

		for i := range 2 {
			l, err := h.c.DeleteLease(context.Background(), alice, names[i])
			require.NoError(t, err)
			require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_RELEASED, l.Status.Reason)
			synctest.Wait()
			require.Equal(t, ready, h.get(alice, names[i+1]).Status.State, "the next in line gets it")
		}
		require.Equal(t, names[2], f.last(t).GetLease().GetName())
	})
}

func TestShortenNeverEndsInThePast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice := h.client("alice", nil)
		h.exporter("e1", rpi4)
		f := h.connect("e1", true)
		defer f.drop(t)
		synctest.Wait()
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(60)}).Metadata.Name
		synctest.Wait()
		time.Sleep(20 * time.Minute)

		_, err := h.c.UpdateLease(context.Background(), alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_Duration{Duration: minutes(10)}})
		requireCode(t, err, connect.CodeFailedPrecondition)
		require.ErrorContains(t, err, "jmp delete lease")
		require.Equal(t, ready, h.get(alice, name).Status.State)

		l, err := h.c.UpdateLease(context.Background(), alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_Duration{Duration: minutes(30)}})
		require.NoError(t, err)
		require.Equal(t, 10*time.Minute, time.Until(l.Status.EndTime.AsTime()))
	})
}

func TestTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice, bob := h.client("alice", nil), h.client("bob", nil)
		h.exporter("e1", rpi4)
		f := h.connect("e1", true)
		defer f.drop(t)
		synctest.Wait()
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1"}).Metadata.Name
		synctest.Wait()

		_, err := h.c.UpdateLease(context.Background(), alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_ToClient{ToClient: "nobody"}})
		requireCode(t, err, connect.CodeNotFound)
		_, err = h.c.UpdateLease(context.Background(), alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_ToClient{ToClient: "bob"}})
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, "bob", h.get(bob, name).Spec.Client)
		require.Equal(t, "bob", f.last(t).GetLease().GetClient(), "the exporter learns its new client")
		_, err = h.c.GetLease(context.Background(), alice, name)
		requireCode(t, err, connect.CodeNotFound)
	})
}

// TestLeaseWithoutStatus: on Kubernetes a lease is created, then its
// status written; another replica may be asked to transfer or release it
// in between. Both work on the status-less record.
func TestLeaseWithoutStatus(t *testing.T) {
	for _, tt := range []struct {
		name  string
		act   func(h *harness, alice Identity, name string) error
		check func(t *testing.T, l *coordinatorv1.Lease)
	}{
		{"transfer", func(h *harness, alice Identity, name string) error {
			_, err := h.c.UpdateLease(context.Background(), alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
				Change: &coordinatorv1.UpdateLeaseRequest_ToClient{ToClient: "bob"}})
			return err
		}, func(t *testing.T, l *coordinatorv1.Lease) {
			require.Equal(t, "bob", l.GetSpec().GetClient())
		}},
		{"release", func(h *harness, alice Identity, name string) error {
			_, err := h.c.DeleteLease(context.Background(), alice, name)
			return err
		}, func(t *testing.T, l *coordinatorv1.Lease) {
			require.Equal(t, ended, l.GetStatus().GetState())
			require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_RELEASED, l.GetStatus().GetReason())
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, testConfig)
				defer h.stop()
				alice := h.client("alice", nil)
				h.client("bob", nil)
				h.exporter("e1", rpi4)
				require.NoError(t, h.st.Create(context.Background(), &coordinatorv1.Lease{
					Metadata: &coordinatorv1.ObjectMeta{Name: "lease-nostatus"},
					Spec:     &coordinatorv1.LeaseSpec{Client: "alice", Selector: "board=rpi4"},
				}))
				synctest.Wait()
				require.NoError(t, tt.act(h, alice, "lease-nostatus"))
				l, err := h.st.Get(context.Background(), store.Leases, "lease-nostatus")
				require.NoError(t, err)
				tt.check(t, l.(*coordinatorv1.Lease))
			})
		})
	}
}

func TestExporterRestartKeepsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice := h.client("alice", nil)
		h.exporter("e1", rpi4)
		f := h.connect("e1", true)
		synctest.Wait()
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(60)}).Metadata.Name
		synctest.Wait()
		require.NoError(t, f.drop(t))
		synctest.Wait()
		e, err := h.c.GetExporter("e1")
		require.NoError(t, err)
		require.Equal(t, coordinatorv1.ExporterStatus_EXPORTER_STATUS_LOST, e.Status)

		// Back within the grace period: same lease.
		time.Sleep(testConfig.ExporterGrace / 2)
		f = h.connect("e1", true)
		synctest.Wait()
		require.Equal(t, name, f.last(t).GetLease().GetName())
		require.Equal(t, ready, h.get(alice, name).Status.State)

		// Away past the grace period: the lease ends, exporter lost.
		require.NoError(t, f.drop(t))
		time.Sleep(testConfig.ExporterGrace)
		synctest.Wait()
		l := h.get(alice, name)
		require.Equal(t, ended, l.Status.State)
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_LOST, l.Status.Reason)
		e, err = h.c.GetExporter("e1")
		require.NoError(t, err)
		require.Equal(t, coordinatorv1.ExporterStatus_EXPORTER_STATUS_OFFLINE, e.Status)
		require.Empty(t, e.Lease)
	})
}

func TestMissedHeartbeatsTakeExporterOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		h.exporter("e1", rpi4)
		f := h.connect("e1", false)
		synctest.Wait()
		e, _ := h.c.GetExporter("e1")
		require.True(t, e.Online)
		time.Sleep(3*testConfig.HeartbeatInterval - time.Second)
		synctest.Wait()
		e, _ = h.c.GetExporter("e1")
		require.True(t, e.Online, "online until the window has passed")
		time.Sleep(time.Second)
		synctest.Wait()
		err := <-f.done
		requireCode(t, err, connect.CodeDeadlineExceeded)
		e, _ = h.c.GetExporter("e1")
		require.False(t, e.Online)
		f.cancel()
	})
}

func TestPreemption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig
		cfg.PreemptionNotice = time.Minute
		h := newHarness(t, cfg)
		defer h.stop()
		team := h.client("alice", map[string]string{"team": "a"})
		guest := h.client("guest", nil)
		_, err := h.c.ApplyPolicy(context.Background(), &coordinatorv1.AccessPolicy{
			Metadata: &coordinatorv1.ObjectMeta{Name: "rpi"}, ExporterSelector: "board=rpi4",
			Rules: []*coordinatorv1.AccessRule{
				{ClientSelector: "team=a", Priority: 10},
				{Priority: 1, Preemptible: true},
			}})
		require.NoError(t, err)
		h.exporter("e1", rpi4)
		f := h.connect("e1", true)
		defer f.drop(t)
		synctest.Wait()

		spot := h.lease(guest, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4", Duration: minutes(60)}).Metadata.Name
		synctest.Wait()
		s := h.get(guest, spot)
		require.Equal(t, ready, s.Status.State)
		require.True(t, s.Status.Preemptible)

		vip := h.lease(team, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"}).Metadata.Name
		synctest.Wait()
		s = h.get(guest, spot)
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTION_NOTICE, s.Status.Reason, "the spot lease gets notice")
		require.Equal(t, time.Minute, time.Until(s.Status.EndTime.AsTime()))
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTING, h.get(team, vip).Status.Reason)

		time.Sleep(time.Minute)
		synctest.Wait()
		s = h.get(guest, spot)
		require.Equal(t, ended, s.Status.State)
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTED, s.Status.Reason)
		require.Equal(t, ready, h.get(team, vip).Status.State)
		require.Equal(t, vip, f.last(t).GetLease().GetName())
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_PREEMPTED, f.ended(t, spot).GetReason())
	})
}

func TestAdmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice := h.client("alice", map[string]string{"team": "a"})
		bob := h.client("bob", map[string]string{"team": "b"})
		h.exporter("e1", rpi4)
		_, err := h.c.ApplyPolicy(context.Background(), &coordinatorv1.AccessPolicy{
			Metadata: &coordinatorv1.ObjectMeta{Name: "rpi"}, ExporterSelector: "board=rpi4",
			Rules: []*coordinatorv1.AccessRule{{ClientSelector: "team=a", MaximumDuration: minutes(60)}}})
		require.NoError(t, err)

		tests := []struct {
			name string
			who  Identity
			req  *coordinatorv1.CreateLeaseRequest
			code connect.Code
			msg  string
		}{
			{"selector does not parse", alice, &coordinatorv1.CreateLeaseRequest{Selector: "board in rpi4"}, connect.CodeInvalidArgument, "does not parse"},
			{"no exporter matches", alice, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi5"}, connect.CodeFailedPrecondition, "no exporter matches"},
			{"exporter does not exist", alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e9"}, connect.CodeNotFound, "does not exist"},
			{"both selector and exporter", alice, &coordinatorv1.CreateLeaseRequest{Selector: "a=b", Exporter: "e1"}, connect.CodeInvalidArgument, "not both"},
			{"over the policy's maximum", alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(90)}, connect.CodeInvalidArgument, "1h0m0s maximum"},
			{"denied by policy", bob, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"}, connect.CodePermissionDenied, "no access policy"},
			{"negative duration", alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(-1)}, connect.CodeInvalidArgument, "positive"},
			{"end in the past", alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", EndTime: timestamppb.New(time.Now().Add(-time.Minute))}, connect.CodeInvalidArgument, "past"},
			{"bad tag", alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Tags: map[string]string{"bad key": "x"}}, connect.CodeInvalidArgument, "tag key"},
		}
		// t.Run is not allowed inside a synctest bubble; name each case in
		// its failure instead.
		for _, tt := range tests {
			_, err := h.c.CreateLease(context.Background(), tt.who, tt.req)
			require.Equal(t, tt.code, connect.CodeOf(err), "%s: %v", tt.name, err)
			require.ErrorContains(t, err, tt.msg, tt.name)
		}
		// Allowed, and extending past the maximum is refused.
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(50)}).Metadata.Name
		_, err = h.c.UpdateLease(context.Background(), alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_Extend{Extend: minutes(20)}})
		requireCode(t, err, connect.CodeInvalidArgument)
		_, err = h.c.UpdateLease(context.Background(), alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_ToClient{ToClient: "bob"}})
		requireCode(t, err, connect.CodePermissionDenied)
	})
}

func TestRevocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		_, tok, err := h.c.CreateClient(context.Background(), "alice", nil)
		require.NoError(t, err)
		_, etok, err := h.c.CreateExporter(context.Background(), "e1", nil)
		require.NoError(t, err)

		id, err := h.c.Authenticate(bearer(tok), token.Client)
		require.NoError(t, err)
		require.Equal(t, Identity{Kind: token.Client, Name: "alice"}, id)
		_, err = h.c.Authenticate(bearer(etok), token.Client, token.Admin)
		requireCode(t, err, connect.CodePermissionDenied)
		_, err = h.c.Authenticate(bearer(tok), token.Admin)
		requireCode(t, err, connect.CodePermissionDenied)
		_, err = h.c.Authenticate(bearer(""), token.Client)
		requireCode(t, err, connect.CodeUnauthenticated)

		// Rotating revokes the old token; the new one works.
		newTok, err := h.c.RotateToken(context.Background(), token.Client, "alice")
		require.NoError(t, err)
		_, err = h.c.Authenticate(bearer(tok), token.Client)
		requireCode(t, err, connect.CodeUnauthenticated)
		require.ErrorContains(t, err, "revoked")
		_, err = h.c.Authenticate(bearer(newTok), token.Client)
		require.NoError(t, err)

		// Deleting revokes at once, even if a client of the same name comes
		// back.
		require.NoError(t, h.c.DeleteClient(context.Background(), "alice"))
		_, err = h.c.Authenticate(bearer(newTok), token.Client)
		requireCode(t, err, connect.CodeUnauthenticated)
		require.ErrorContains(t, err, "no longer exists")
		h.client("alice", nil)
		_, err = h.c.Authenticate(bearer(newTok), token.Client)
		requireCode(t, err, connect.CodeUnauthenticated)

		// Expired.
		time.Sleep(defaultTokenLifetime + time.Second)
		_, err = h.c.Authenticate(bearer(etok), token.Exporter)
		requireCode(t, err, connect.CodeUnauthenticated)
		require.ErrorContains(t, err, "expired")
	})
}

func TestSigningKeyRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		_, before, err := h.c.CreateClient(context.Background(), "alice", nil)
		require.NoError(t, err)
		kid, err := h.c.RotateSigningKey(context.Background())
		require.NoError(t, err)
		_, after, err := h.c.CreateClient(context.Background(), "bob", nil)
		require.NoError(t, err)
		require.Len(t, h.c.keys.KeyIDs(), 2)
		require.Equal(t, kid, h.c.keys.SigningKeyID())
		for _, tok := range []string{before, after} {
			_, err := h.c.Authenticate(bearer(tok), token.Client)
			require.NoError(t, err)
		}
		// A restart keeps both keys.
		h.stop()
		h.start(testConfig)
		_, err = h.c.Authenticate(bearer(before), token.Client)
		require.NoError(t, err)
	})
}

func TestSessionToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice := h.client("alice", nil)
		h.exporter("e1", rpi4)
		exporterKey := make([]byte, 32)
		exporterKey[0] = 7
		_, err := h.c.Register(context.Background(), "e1", nil, exporterKey)
		require.NoError(t, err)
		f := h.connect("e1", true)
		defer f.drop(t)
		synctest.Wait()
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(5)}).Metadata.Name
		clientKey := make([]byte, 32)
		clientKey[0] = 9
		_, err = h.c.Dial(context.Background(), alice, name, clientKey[:5])
		requireCode(t, err, connect.CodeInvalidArgument)
		synctest.Wait()

		resp, err := h.c.Dial(context.Background(), alice, name, clientKey)
		require.NoError(t, err)
		require.Equal(t, exporterKey, resp.ExporterPublicKey)
		l := h.get(alice, name)
		require.True(t, resp.ExpireTime.AsTime().Equal(l.Status.EndTime.AsTime()), "no later than the lease")

		claims, err := h.c.keys.Verify(resp.Token, token.Session, token.ExporterAudience("e1"), time.Now())
		require.NoError(t, err)
		require.Equal(t, name, claims.Lease)
		require.Equal(t, "alice", claims.Client)
		require.Equal(t, "e1", claims.Exporter)
		require.Equal(t, token.Thumbprint(clientKey), claims.Cnf.JKT)
		_, err = h.c.Authenticate(bearer(resp.Token), token.Client, token.Admin)
		requireCode(t, err, connect.CodePermissionDenied)
	})
}

func TestRestartKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		alice := h.client("alice", nil)
		h.exporter("e1", rpi4)
		h.exporter("e2", rpi4)
		_, err := h.c.ApplyPolicy(context.Background(), &coordinatorv1.AccessPolicy{
			Metadata: &coordinatorv1.ObjectMeta{Name: "all"}, Rules: []*coordinatorv1.AccessRule{{}}})
		require.NoError(t, err)
		f := h.connect("e1", true)
		synctest.Wait()
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(60)}).Metadata.Name
		synctest.Wait()

		// The coordinator goes away; the exporter's stream with it.
		f.cancel()
		h.c.Close()
		<-f.done
		require.NoError(t, h.st.Close())
		time.Sleep(time.Minute / 2)
		h.start(testConfig)
		defer h.stop()
		l := h.get(alice, name)
		require.Equal(t, ready, l.Status.State, "the lease survives the restart")
		require.Len(t, h.c.ListPolicies(), 1)
		list, err := h.c.ListExporters("")
		require.NoError(t, err)
		require.Len(t, list, 2)

		// The exporter reconnects and comes back to its lease.
		f = h.connect("e1", true)
		defer f.drop(t)
		synctest.Wait()
		require.Equal(t, name, f.last(t).GetLease().GetName())
		time.Sleep(testConfig.ExporterGrace * 2)
		synctest.Wait()
		require.Equal(t, ready, h.get(alice, name).Status.State)
	})
}

func TestRestartSweepsVanishedExporters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		alice := h.client("alice", nil)
		h.exporter("e1", rpi4)
		f := h.connect("e1", true)
		synctest.Wait()
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(60)}).Metadata.Name
		synctest.Wait()
		// A crash: the store goes before the stream can record e1 offline.
		h.c.Close()
		require.NoError(t, h.st.Close())
		f.cancel()
		<-f.done

		h.start(testConfig)
		defer h.stop()
		e, _ := h.c.GetExporter("e1")
		require.True(t, e.Online)
		time.Sleep(3*testConfig.HeartbeatInterval + time.Second)
		synctest.Wait()
		e, _ = h.c.GetExporter("e1")
		require.False(t, e.Online, "not heard from since the restart")
		time.Sleep(testConfig.ExporterGrace)
		synctest.Wait()
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_LOST, h.get(alice, name).Status.Reason)
	})
}

func TestDeleteExporterEndsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice := h.client("alice", nil)
		h.exporter("e1", rpi4)
		f := h.connect("e1", true)
		synctest.Wait()
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1"}).Metadata.Name
		synctest.Wait()
		require.NoError(t, h.c.DeleteExporter(context.Background(), "e1"))
		synctest.Wait()
		requireCode(t, <-f.done, connect.CodeUnauthenticated)
		f.cancel()
		l := h.get(alice, name)
		require.Equal(t, ended, l.Status.State)
		require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_EXPORTER_DELETED, l.Status.Reason)
	})
}
