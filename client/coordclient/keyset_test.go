package coordclient_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	"github.com/jumpmesh/jumpmesh/coordinator/store/boltstore"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/stretchr/testify/require"
)

// TestKeySet checks session tokens as the exporter and a relay run apart
// do: with the coordinator's keys from its JWKS, fetched at first use and
// again for a key made since, but not for every token of an unknown key.
func TestKeySet(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"))
	require.NoError(t, err)
	defer st.Close()
	c, err := coordinator.New(context.Background(), coordinator.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer c.Close()
	var fetches atomic.Int32
	h := c.Handler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == coordinator.JWKSPath {
			fetches.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cl, err := coordclient.New(coordclient.Conn{Endpoint: srv.URL,
		TLS: coordclient.TLSConfig{CAFingerprint: certs.Fingerprint(srv.Certificate().Raw)}})
	require.NoError(t, err)
	defer cl.Close()
	ks := cl.KeySet()

	now := time.Now()
	claims := func() *token.Claims {
		return &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", Audience: jwt.ClaimStrings{token.ExporterAudience("e1")},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}, Lease: "l1", Client: "alice", Exporter: "e1"}
	}
	sign := func() string {
		tok, err := c.Tokens().Sign(token.Session, claims())
		require.NoError(t, err)
		return tok
	}
	verify := func(tok string) error {
		_, err := ks.Verify(tok, token.Session, token.ExporterAudience("e1"), now)
		return err
	}

	first := sign()
	require.NoError(t, verify(first))
	require.NoError(t, verify(first))
	require.Equal(t, int32(1), fetches.Load(), "fetched once, at first use")
	require.ErrorIs(t, verify(first[:len(first)-4]+"AAAA"), token.ErrInvalid)

	_, err = c.RotateSigningKey(context.Background())
	require.NoError(t, err)
	// Waits out the refetch interval: the rate limit under test is in
	// real time, the coordinator being on a real socket.
	time.Sleep(time.Second)
	require.NoError(t, verify(sign()), "a token of a new key fetches the keys again")
	require.NoError(t, verify(first), "the old key still verifies")
	require.Equal(t, int32(2), fetches.Load())

	// Tokens of a key the coordinator never had: one fetch at most per
	// interval (a second), however many come.
	_, forger, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	forged := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims())
	forged.Header["kid"], forged.Header["typ"] = "nope", "jumpmesh-session+jwt"
	raw, err := forged.SignedString(forger)
	require.NoError(t, err)
	for range 5 {
		require.ErrorIs(t, verify(raw), token.ErrUnknownKey)
	}
	require.LessOrEqual(t, fetches.Load(), int32(3), "at most one more fetch")
}

// TestKeySetUnreachable: with no keys and no coordinator, a token fails
// with why.
func TestKeySetUnreachable(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	url, fp := srv.URL, certs.Fingerprint(srv.Certificate().Raw)
	srv.Close()
	cl, err := coordclient.New(coordclient.Conn{Endpoint: url, TLS: coordclient.TLSConfig{CAFingerprint: fp}})
	require.NoError(t, err)
	defer cl.Close()
	_, err = cl.KeySet().Verify("a.b.c", token.Session, token.ExporterAudience("e1"), time.Now())
	require.ErrorContains(t, err, "cannot reach the coordinator")
}
