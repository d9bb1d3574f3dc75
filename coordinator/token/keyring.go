package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Key is one signing key. A key with no RetireTime may sign; the newest of
// those does. Keys verify until their RetireTime, so rotating never breaks a
// token already given out.
type Key struct {
	ID         string
	Private    ed25519.PrivateKey
	Created    time.Time
	RetireTime time.Time
}

// Keyring signs with the newest key and verifies with all keys still
// unretired. It is safe for concurrent use; SetKeys swaps the keys
// atomically.
type Keyring struct {
	issuer string
	state  atomic.Pointer[keyState]
}

type keyState struct {
	signing  *Key
	verifier Verifier
	keys     []Key
}

// NewKeyring returns a keyring for the issuer with no keys; call SetKeys.
func NewKeyring(issuer string) *Keyring {
	k := &Keyring{issuer: issuer}
	k.state.Store(&keyState{verifier: Verifier{Issuer: issuer, Keys: map[string]ed25519.PublicKey{}}})
	return k
}

// Issuer is the iss of every token it signs.
func (k *Keyring) Issuer() string { return k.issuer }

// SetKeys replaces the keys. Keys retired before now are dropped.
func (k *Keyring) SetKeys(keys []Key, now time.Time) {
	st := &keyState{verifier: Verifier{Issuer: k.issuer, Keys: map[string]ed25519.PublicKey{}}}
	for _, key := range keys {
		if !key.RetireTime.IsZero() && !key.RetireTime.After(now) {
			continue
		}
		st.keys = append(st.keys, key)
		st.verifier.Keys[key.ID] = key.Private.Public().(ed25519.PublicKey)
	}
	slices.SortFunc(st.keys, func(a, b Key) int { return a.Created.Compare(b.Created) })
	for i := len(st.keys) - 1; i >= 0; i-- {
		if st.keys[i].RetireTime.IsZero() {
			st.signing = &st.keys[i]
			break
		}
	}
	k.state.Store(st)
}

// SigningKeyID is the id of the key that signs now, or "" when none does.
func (k *Keyring) SigningKeyID() string {
	if s := k.state.Load().signing; s != nil {
		return s.ID
	}
	return ""
}

// KeyIDs lists the ids of the keys that verify, oldest first.
func (k *Keyring) KeyIDs() []string {
	var ids []string
	for _, key := range k.state.Load().keys {
		ids = append(ids, key.ID)
	}
	return ids
}

// Sign signs claims as a token of the kind. It sets the issuer; the caller
// sets subject, audience, issue and expiry times.
func (k *Keyring) Sign(kind Kind, claims *Claims) (string, error) {
	st := k.state.Load()
	if st.signing == nil {
		return "", fmt.Errorf("sign %s token: no signing key", kind)
	}
	claims.Issuer = k.issuer
	t := jwt.NewWithClaims(method, claims)
	t.Header["kid"] = st.signing.ID
	t.Header["typ"] = kind.typ()
	s, err := t.SignedString(st.signing.Private)
	if err != nil {
		return "", fmt.Errorf("sign %s token: %w", kind, err)
	}
	return s, nil
}

// Verify checks a token with the keys that verify now; see Verifier.Verify.
func (k *Keyring) Verify(raw string, kind Kind, audience string, now time.Time) (*Claims, error) {
	v := k.state.Load().verifier
	return v.Verify(raw, kind, audience, now)
}

// JWKSPath is where the coordinator serves its JWKS, beside its API.
const JWKSPath = "/.well-known/jwks.json"

// JWKS is the public keys as a JSON Web Key Set (RFC 7517, OKP keys of
// RFC 8037).
func (k *Keyring) JWKS() ([]byte, error) {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, key := range k.state.Load().keys {
		pub := key.Private.Public().(ed25519.PublicKey)
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
			Kid: key.ID, Alg: method.Alg(), Use: "sig"})
	}
	return json.Marshal(set)
}

// ParseJWKS reads the Ed25519 keys of a JWKS, for a Verifier.
func ParseJWKS(data []byte) (map[string]ed25519.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("parse JWKS: key %q: bad x", k.Kid)
		}
		keys[k.Kid] = ed25519.PublicKey(x)
	}
	return keys, nil
}
