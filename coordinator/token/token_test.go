package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 8, 21, 12, 0, 0, 0, time.UTC)

func newKey(t *testing.T, id string, created time.Time) Key {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return Key{ID: id, Private: priv, Created: created}
}

func identityClaims(sub string, exp time.Time) *Claims {
	return &Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		ID:        "tid-1",
		Audience:  jwt.ClaimStrings{CoordinatorAudience},
		IssuedAt:  jwt.NewNumericDate(t0),
		ExpiresAt: jwt.NewNumericDate(exp),
	}}
}

// forge signs claims with any method and key, setting the headers a real
// token has, to build the tokens an attacker would send.
func forge(t *testing.T, m jwt.SigningMethod, key any, kid, typ string, claims *Claims) string {
	claims.Issuer = "lab"
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = kid
	tok.Header["typ"] = typ
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func TestVerify(t *testing.T) {
	ring := NewKeyring("lab")
	key := newKey(t, "k1", t0)
	ring.SetKeys([]Key{key}, t0)
	other := newKey(t, "k1", t0) // same id, different key
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub := key.Private.Public().(ed25519.PublicKey)

	good := func() *Claims { return identityClaims("alice", t0.Add(time.Hour)) }
	sign := func(kind Kind, c *Claims) string {
		s, err := ring.Sign(kind, c)
		require.NoError(t, err)
		return s
	}
	tests := []struct {
		name     string
		token    string
		kind     Kind
		audience string
		now      time.Time
		wantErr  error
	}{
		{name: "valid client token", token: sign(Client, good()), kind: Client, audience: CoordinatorAudience, now: t0},
		{name: "expired", token: sign(Client, good()), kind: Client, audience: CoordinatorAudience, now: t0.Add(2 * time.Hour), wantErr: ErrExpired},
		{name: "no expiry", token: sign(Client, &Claims{RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", Audience: jwt.ClaimStrings{CoordinatorAudience}}}),
			kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
		{name: "issued in the future", token: sign(Client, func() *Claims {
			c := good()
			c.IssuedAt = jwt.NewNumericDate(t0.Add(time.Minute))
			return c
		}()), kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
		{name: "wrong audience", token: sign(Client, good()), kind: Client, audience: ExporterAudience("e1"), now: t0, wantErr: ErrInvalid},
		{name: "client token used as admin", token: sign(Client, good()), kind: Admin, audience: CoordinatorAudience, now: t0, wantErr: ErrWrongKind},
		{name: "exporter token used as client", token: sign(Exporter, good()), kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrWrongKind},
		{name: "session token used as client", token: sign(Session, good()), kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrWrongKind},
		{name: "wrong key with a known kid", token: forge(t, method, other.Private, "k1", Client.typ(), good()),
			kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
		{name: "unknown kid", token: forge(t, method, key.Private, "k9", Client.typ(), good()),
			kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrUnknownKey},
		{name: "alg none", token: forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", Client.typ(), good()),
			kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
		{name: "HS256 keyed with the public key", token: forge(t, jwt.SigningMethodHS256, []byte(pub), "k1", Client.typ(), good()),
			kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
		{name: "ES256", token: forge(t, jwt.SigningMethodES256, ecKey, "k1", Client.typ(), good()),
			kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
		{name: "wrong issuer", token: func() string {
			other := NewKeyring("other-lab")
			other.SetKeys([]Key{key}, t0)
			s, err := other.Sign(Client, good())
			require.NoError(t, err)
			return s
		}(), kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
		{name: "tampered payload", token: func() string {
			s := sign(Client, good())
			// Re-encode the payload with another subject, keeping the signature.
			parts := splitToken(t, s)
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			require.NoError(t, err)
			payload = []byte(string(payload[:len(payload)-1]) + `,"sub":"mallory"}`)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
		}(), kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
		{name: "garbage", token: "not.a.jwt", kind: Client, audience: CoordinatorAudience, now: t0, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims, err := ring.Verify(tt.token, tt.kind, tt.audience, tt.now)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Nil(t, claims)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "alice", claims.Subject)
			require.Equal(t, "tid-1", claims.ID)
		})
	}
}

func splitToken(t *testing.T, s string) []string {
	var parts []string
	start := 0
	for i := range len(s) {
		if s[i] == '.' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	require.Len(t, parts, 3)
	return parts
}

func TestRotationKeepsTokensInFlight(t *testing.T) {
	ring := NewKeyring("lab")
	k1 := newKey(t, "k1", t0)
	ring.SetKeys([]Key{k1}, t0)
	before, err := ring.Sign(Client, identityClaims("alice", t0.Add(48*time.Hour)))
	require.NoError(t, err)

	// Rotate: k1 retires in a day, k2 signs from now on.
	k1.RetireTime = t0.Add(24 * time.Hour)
	k2 := newKey(t, "k2", t0.Add(time.Minute))
	ring.SetKeys([]Key{k2, k1}, t0.Add(time.Minute))
	require.Equal(t, "k2", ring.SigningKeyID())
	require.Equal(t, []string{"k1", "k2"}, ring.KeyIDs())
	after, err := ring.Sign(Client, identityClaims("bob", t0.Add(48*time.Hour)))
	require.NoError(t, err)

	for _, tok := range []string{before, after} {
		_, err := ring.Verify(tok, Client, CoordinatorAudience, t0.Add(time.Hour))
		require.NoError(t, err)
	}

	// Once k1 retires, its tokens stop verifying; k2's go on.
	ring.SetKeys([]Key{k2, k1}, t0.Add(25*time.Hour))
	_, err = ring.Verify(before, Client, CoordinatorAudience, t0.Add(25*time.Hour))
	require.ErrorIs(t, err, ErrInvalid)
	_, err = ring.Verify(after, Client, CoordinatorAudience, t0.Add(25*time.Hour))
	require.NoError(t, err)
}

func TestSignWithoutKeyFails(t *testing.T) {
	_, err := NewKeyring("lab").Sign(Client, identityClaims("alice", t0))
	require.ErrorContains(t, err, "no signing key")
}

func TestJWKSVerifiesSessionTokens(t *testing.T) {
	ring := NewKeyring("lab")
	ring.SetKeys([]Key{newKey(t, "k1", t0)}, t0)
	clientPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	tok, err := ring.Sign(Session, &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "alice",
			Audience:  jwt.ClaimStrings{ExporterAudience("e1")},
			IssuedAt:  jwt.NewNumericDate(t0),
			ExpiresAt: jwt.NewNumericDate(t0.Add(time.Minute)),
		},
		Lease: "l1", Client: "alice", Exporter: "e1",
		Cnf: &Confirmation{JKT: Thumbprint(clientPub)},
	})
	require.NoError(t, err)

	jwks, err := ring.JWKS()
	require.NoError(t, err)
	keys, err := ParseJWKS(jwks)
	require.NoError(t, err)
	v := &Verifier{Issuer: "lab", Keys: keys}
	claims, err := v.Verify(tok, Session, ExporterAudience("e1"), t0)
	require.NoError(t, err)
	require.Equal(t, "l1", claims.Lease)
	require.Equal(t, Thumbprint(clientPub), claims.Cnf.JKT)

	_, err = v.Verify(tok, Session, ExporterAudience("e2"), t0)
	require.ErrorIs(t, err, ErrInvalid, "a session token is for one exporter only")
}

// TestThumbprint checks RFC 8037 appendix A.3's example.
func TestThumbprint(t *testing.T) {
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	require.NoError(t, err)
	require.Equal(t, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", Thumbprint(ed25519.PublicKey(x)))
}
