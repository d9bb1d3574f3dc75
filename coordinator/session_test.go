package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"testing/synctest"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
)

// tokensSince returns the session tokens the exporter was sent after the
// first n messages, and how many messages it has now.
func (f *fakeExporter) tokensSince(n int) ([]string, int) {
	f.drain()
	var toks []string
	for _, r := range f.history[n:] {
		toks = append(toks, r.GetSessionTokens()...)
	}
	return toks, len(f.history)
}

func newClientKey(t *testing.T) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return pub
}

// TestExporterSessionTokens has two coordinators share one store: clients
// dial through B while the exporter's status stream is on A. A must hand
// the exporter a token for each dial, renewal and new client key, with the
// claims of the client's own token, so that the relay pairs the two; none
// again for changes that are not dials; all live ones to a new stream;
// none for the old client's sessions after a transfer.
func TestExporterSessionTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st := openStore(t, t.TempDir())
		defer st.Close()
		cfg := testConfig
		cfg.Store, cfg.Logger = st, quietLogger()
		cfg.Relay = &coordinatorv1.RelayEndpoint{Udp: "relay.test:3478", CaFingerprint: "sha256:00"}
		ca, err := New(ctx, cfg)
		require.NoError(t, err)
		defer ca.Close()
		cb, err := New(ctx, cfg)
		require.NoError(t, err)
		defer cb.Close()
		a := &harness{t: t, st: st, c: ca}
		b := &harness{t: t, st: st, c: cb}
		alice := b.client("alice", nil)
		b.client("bob", nil)
		a.exporter("e1", rpi4)
		_, err = ca.Register(ctx, "e1", nil, make([]byte, ed25519.PublicKeySize))
		require.NoError(t, err)
		f := a.connect("e1", true)
		synctest.Wait()
		name := b.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(60)}).Metadata.Name
		synctest.Wait()
		require.Equal(t, ready, b.get(alice, name).Status.State)
		_, seen := f.tokensSince(0)

		// dial dials through B and checks the token A gives the exporter
		// for it against the client's.
		dial := func(who Identity, key ed25519.PublicKey) {
			t.Helper()
			resp, err := cb.Dial(ctx, who, name, key)
			require.NoError(t, err)
			require.Equal(t, cfg.Relay.GetUdp(), resp.GetRelay().GetUdp(), "the client learns the relay")
			synctest.Wait()
			toks, n := f.tokensSince(seen)
			seen = n
			require.Len(t, toks, 1, "one token for the exporter per dial")
			want, err := cb.keys.Verify(resp.Token, token.Session, token.ExporterAudience("e1"), time.Now())
			require.NoError(t, err)
			got, err := ca.keys.Verify(toks[0], token.Session, token.ExporterAudience("e1"), time.Now())
			require.NoError(t, err)
			require.Equal(t, want.Lease, got.Lease)
			require.Equal(t, who.Name, got.Client)
			require.Equal(t, want.Client, got.Client)
			require.Equal(t, want.Exporter, got.Exporter)
			require.Equal(t, token.Thumbprint(key), got.Cnf.JKT)
			require.True(t, want.ExpiresAt.Equal(got.ExpiresAt.Time), "expires with the client's: %v, %v", want.ExpiresAt, got.ExpiresAt)
		}
		noTokens := func(why string) {
			t.Helper()
			synctest.Wait()
			toks, n := f.tokensSince(seen)
			seen = n
			require.Empty(t, toks, why)
		}

		k1, k2 := newClientKey(t), newClientKey(t)
		dial(alice, k1)
		time.Sleep(time.Minute)
		dial(alice, k1) // a renewal: a later expiry
		dial(alice, k2) // a second shell
		_, err = cb.UpdateLease(ctx, alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_Extend{Extend: minutes(10)}})
		require.NoError(t, err)
		noTokens("a change that is no dial gives no tokens")
		require.Empty(t, b.get(alice, name).Status.Dials, "dials are bookkeeping, not shown")

		// The exporter reconnects: its new stream gets both live sessions.
		f.drop(t)
		g := a.connect("e1", true)
		defer g.drop(t)
		synctest.Wait()
		toks, _ := g.tokensSince(0)
		require.Len(t, toks, 2)

		// Handed to Bob: Alice's sessions get no more tokens, Bob's do.
		f, seen = g, len(g.history)
		_, err = cb.UpdateLease(ctx, alice, &coordinatorv1.UpdateLeaseRequest{Name: name,
			Change: &coordinatorv1.UpdateLeaseRequest_ToClient{ToClient: "bob"}})
		require.NoError(t, err)
		noTokens("a transfer gives no tokens")
		_, err = cb.Dial(ctx, alice, name, k1)
		requireCode(t, err, connect.CodeNotFound)
		dial(Identity{Kind: token.Client, Name: "bob"}, k1)
	})
}

// TestDialsBounded: a lease keeps at most maxDials sessions, dropping those
// that expire first, and forgets expired ones.
func TestDialsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig)
		defer h.stop()
		alice := h.client("alice", nil)
		h.exporter("e1", rpi4)
		_, err := h.c.Register(context.Background(), "e1", nil, make([]byte, ed25519.PublicKeySize))
		require.NoError(t, err)
		f := h.connect("e1", true)
		defer f.drop(t)
		synctest.Wait()
		name := h.lease(alice, &coordinatorv1.CreateLeaseRequest{Exporter: "e1", Duration: minutes(60)}).Metadata.Name
		synctest.Wait()
		dials := func() []*coordinatorv1.LeaseDial { return h.c.cache.lease(name).GetStatus().GetDials() }
		var first ed25519.PublicKey
		for i := range maxDials + 1 {
			key := newClientKey(t)
			if i == 0 {
				first = key
			}
			_, err := h.c.Dial(context.Background(), alice, name, key)
			require.NoError(t, err)
			time.Sleep(time.Second)
		}
		require.Len(t, dials(), maxDials)
		for _, d := range dials() {
			require.NotEqual(t, token.Thumbprint(first), d.GetClientKeyThumbprint(), "the first to expire went")
		}
		time.Sleep(defaultSessionTTL)
		_, err = h.c.Dial(context.Background(), alice, name, first)
		require.NoError(t, err)
		require.Len(t, dials(), 1, "expired sessions are forgotten")
	})
}
