package coordclient_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	"github.com/jumpmesh/jumpmesh/coordinator/store/boltstore"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/util/wait"
)

// deadline bounds each wait for the agent; on loopback each takes
// milliseconds.
const deadline = 10 * time.Second

func next(t *testing.T, ch <-chan coordclient.Assignment, want func(coordclient.Assignment) bool) coordclient.Assignment {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case a := <-ch:
			if want(a) {
				return a
			}
		case <-timeout:
			t.Fatal("the agent did not get the expected assignment")
		}
	}
}

// TestAgent runs an exporter's agent against a coordinator served over
// TLS: it registers, learns its lease, reconnects after the connection
// drops, and stops for good when its token is revoked.
func TestAgent(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"))
	require.NoError(t, err)
	defer st.Close()
	relay := &coordinatorv1.RelayEndpoint{Udp: "relay.test:3478", Tcp: "relay.test:443", CaFingerprint: "sha256:00"}
	c, err := coordinator.New(context.Background(), coordinator.Config{Store: st, HeartbeatInterval: 100 * time.Millisecond,
		Relay: relay, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer c.Close()
	_, etok, err := c.CreateExporter(context.Background(), "e1", map[string]string{"board": "rpi4"})
	require.NoError(t, err)
	_, _, err = c.CreateClient(context.Background(), "alice", nil)
	require.NoError(t, err)

	srv := httptest.NewUnstartedServer(c.Handler())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	cl, err := coordclient.New(coordclient.Conn{Endpoint: srv.URL, Token: etok,
		TLS: coordclient.TLSConfig{CAFingerprint: certs.Fingerprint(srv.Certificate().Raw)}})
	require.NoError(t, err)
	defer cl.Close()

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	sessions := make(chan string, 16)
	agent := &coordclient.Agent{Client: cl, Report: &jumpmeshv1.Report{Drivers: []*jumpmeshv1.DriverReport{{Name: "power"}}},
		PublicKey: pub, Logger: slog.New(slog.DiscardHandler), Backoff: wait.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 100, Cap: 100 * time.Millisecond},
		OnSession: func(tok string) { sessions <- tok }}
	updates, stop := agent.Watch()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()

	next(t, updates, func(a coordclient.Assignment) bool { return a.Online && a.Lease == "" })
	e, err := c.GetExporter("e1")
	require.NoError(t, err)
	require.Equal(t, []byte(pub), e.GetPublicKey(), "it registered its key")
	require.Len(t, e.GetReport().GetDrivers(), 1)
	require.True(t, proto.Equal(relay, agent.Relay()), "it learned the relay")

	alice := coordinator.Identity{Kind: token.Client, Name: "alice"}
	l, err := c.CreateLease(context.Background(), alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: durationpb.New(time.Hour)})
	require.NoError(t, err)
	name := l.GetMetadata().GetName()
	got := next(t, updates, func(a coordclient.Assignment) bool { return a.Lease == name })
	require.Equal(t, "alice", got.Client)

	// Alice dials: the exporter gets a token for her session.
	clientKey, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, err = c.Dial(context.Background(), alice, name, clientKey)
	require.NoError(t, err)
	select {
	case tok := <-sessions:
		claims, err := cl.KeySet().Verify(tok, token.Session, token.ExporterAudience("e1"), time.Now())
		require.NoError(t, err)
		require.Equal(t, name, claims.Lease)
		require.Equal(t, token.Thumbprint(clientKey), claims.Cnf.JKT)
	case <-time.After(deadline):
		t.Fatal("the agent got no session token")
	}

	// The connection drops; the agent comes back to the same lease.
	// Drained first, so the update awaited next can only be the reconnect's:
	// going offline is always reported before.
	select {
	case <-updates:
	default:
	}
	srv.CloseClientConnections()
	next(t, updates, func(a coordclient.Assignment) bool { return a.Online && a.Lease == name })
	require.Equal(t, name, agent.Current().Lease)

	// Released: the agent hears why.
	_, err = c.DeleteLease(context.Background(), alice, name)
	require.NoError(t, err)
	ended := next(t, updates, func(a coordclient.Assignment) bool { return a.Ended == name })
	require.Equal(t, coordinatorv1.LeaseReason_LEASE_REASON_RELEASED, ended.EndedReason)

	// Revoked: retrying cannot help, so Run gives up with the reason.
	_, err = c.RotateToken(context.Background(), token.Exporter, "e1")
	require.NoError(t, err)
	srv.CloseClientConnections()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "revoked")
	case <-time.After(deadline):
		t.Fatal("the agent kept retrying a revoked token")
	}
	cancel()
}
