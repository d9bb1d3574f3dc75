// Package token signs and checks the coordinator's JWTs: identity tokens
// for admins, clients and exporters, and short session tokens that let one
// client reach one leased exporter. Tokens are EdDSA (Ed25519) with a key
// id; the kind is the JOSE header's typ (explicit typing, RFC 8725 §3.11),
// so a token of one kind is never taken for another.
package token

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Kind is what a token is for.
type Kind string

const (
	Admin    Kind = "admin"
	Client   Kind = "client"
	Exporter Kind = "exporter"
	Session  Kind = "session"
)

// typ is the header value for a kind.
func (k Kind) typ() string { return "jumpmesh-" + string(k) + "+jwt" }

// Audiences. Identity tokens are for the coordinator; a session token is
// for the one exporter it names.
const CoordinatorAudience = "jumpmesh-coordinator"

// ExporterAudience is the audience of session tokens for the named exporter.
func ExporterAudience(exporter string) string { return "jumpmesh-exporter:" + exporter }

// Claims are a token's claims. Identity tokens have Subject (the identity's
// name) and ID (the identity's token id, which revocation replaces).
// Session tokens also have Lease, Client, Exporter and Cnf.
type Claims struct {
	jwt.RegisteredClaims
	Lease    string        `json:"lease,omitempty"`
	Client   string        `json:"client,omitempty"`
	Exporter string        `json:"exporter,omitempty"`
	Cnf      *Confirmation `json:"cnf,omitempty"`
}

// Confirmation binds a token to a key (RFC 7800): JKT is the RFC 7638
// thumbprint of the client's Ed25519 public key, as in RFC 9449.
type Confirmation struct {
	JKT string `json:"jkt"`
}

// Errors from Verify; check with errors.Is.
var (
	ErrExpired   = errors.New("token expired")
	ErrWrongKind = errors.New("token of the wrong kind")
	ErrInvalid   = errors.New("token invalid")
	// ErrUnknownKey: the token's kid is none of the verifier's keys; one
	// fetched from the JWKS may be stale (the coordinator rotated its key).
	ErrUnknownKey = errors.New("unknown signing key")
)

// method is the only signing algorithm: validation pins it.
var method = jwt.SigningMethodEdDSA

// Thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key:
// SHA-256 over the required members in lexicographic order.
func Thumbprint(pub ed25519.PublicKey) string {
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Verifier checks tokens against a set of public keys. The exporter side of
// the mesh builds one from the coordinator's JWKS.
type Verifier struct {
	Issuer string
	Keys   map[string]ed25519.PublicKey // by key id
}

// Verify checks raw as a token of the kind for the audience at time now:
// algorithm, key, type, issuer, audience, expiry (required) and issue time.
func (v *Verifier) Verify(raw string, kind Kind, audience string, now time.Time) (*Claims, error) {
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{method.Alg()}),
		jwt.WithIssuer(v.Issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	claims := &Claims{}
	_, err := parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if t.Method != method {
			return nil, fmt.Errorf("algorithm %v is not EdDSA", t.Header["alg"])
		}
		if typ, _ := t.Header["typ"].(string); typ != kind.typ() {
			return nil, fmt.Errorf("%w: want %s, got %q", ErrWrongKind, kind, typ)
		}
		kid, _ := t.Header["kid"].(string)
		key, ok := v.Keys[kid]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
		}
		return key, nil
	})
	switch {
	case err == nil:
		return claims, nil
	case errors.Is(err, jwt.ErrTokenExpired):
		exp := "an unknown time"
		if claims.ExpiresAt != nil {
			exp = claims.ExpiresAt.UTC().Format(time.RFC3339)
		}
		return nil, fmt.Errorf("%w at %s", ErrExpired, exp)
	case errors.Is(err, ErrWrongKind):
		return nil, err
	}
	return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
}
