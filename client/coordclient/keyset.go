package coordclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
)

// Key set fetching.
const (
	// refetchInterval spaces fetches for tokens of unknown keys: a stream
	// of forged tokens becomes at most one small request a second to the
	// coordinator, and a key made since the last fetch is known within a
	// second.
	refetchInterval = time.Second
	// fetchTimeout bounds one fetch of the JWKS.
	fetchTimeout = 10 * time.Second
	// maxJWKS bounds the JWKS read: a handful of keys is a few hundred
	// bytes.
	maxJWKS = 1 << 20
)

// KeySet checks the coordinator's tokens, as the exporter and a relay run
// apart do: with its public keys from its JWKS, fetched over the pinned
// TLS at first use, and again when a token names a key the set lacks (the
// coordinator made a new one). It does not check the issuer: the keys are
// the coordinator's, and any token they sign is its. It is safe for
// concurrent use.
type KeySet struct {
	c        *Client
	verifier atomic.Pointer[token.Verifier] // nil until a fetch succeeds

	mu      sync.Mutex // held while fetching
	fetched time.Time  // the last attempt
	err     error      // of the last attempt
}

// KeySet returns the coordinator's key set; it fetches the keys when
// first asked to verify a token, or by Fetch.
func (c *Client) KeySet() *KeySet { return &KeySet{c: c} }

// Fetch fetches the keys now.
func (k *KeySet) Fetch(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetch(ctx)
}

// Verify checks raw as token.Verifier does, with keys fetched again first
// if the token names a key the set lacks, unless a fetch was tried within
// refetchInterval.
func (k *KeySet) Verify(raw string, kind token.Kind, audience string, now time.Time) (*token.Claims, error) {
	v := k.verifier.Load()
	err := errors.New("the coordinator's keys have not been fetched yet")
	if v != nil {
		var claims *token.Claims
		if claims, err = v.Verify(raw, kind, audience, now); !errors.Is(err, token.ErrUnknownKey) {
			return claims, err
		}
	}
	newer, ferr := k.refetch(v)
	switch {
	case newer != nil:
		return newer.Verify(raw, kind, audience, now)
	case ferr != nil:
		return nil, ferr
	}
	return nil, err
}

// refetch returns a newer verifier than seen: one fetched meanwhile, or
// fetched now unless a fetch was tried too recently. With none, it
// returns the last fetch's error.
func (k *KeySet) refetch(seen *token.Verifier) (*token.Verifier, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if cur := k.verifier.Load(); cur != seen {
		return cur, nil
	}
	if !k.fetched.IsZero() && time.Since(k.fetched) < refetchInterval {
		return nil, k.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	if err := k.fetch(ctx); err != nil {
		return nil, err
	}
	return k.verifier.Load(), nil
}

// fetch reads the JWKS into a new verifier; k.mu is held.
func (k *KeySet) fetch(ctx context.Context) error {
	k.fetched = time.Now()
	k.err = k.get(ctx)
	return k.err
}

func (k *KeySet) get(ctx context.Context) error {
	url := strings.TrimSuffix(k.c.Endpoint, "/") + token.JWKSPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("fetch the coordinator's keys: %w", err)
	}
	resp, err := k.c.http.Do(req)
	if err != nil {
		return fmt.Errorf("fetch the coordinator's keys: %w", k.c.Explain(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch the coordinator's keys from %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS))
	if err != nil {
		return fmt.Errorf("fetch the coordinator's keys: %w", err)
	}
	keys, err := token.ParseJWKS(data)
	if err != nil {
		return fmt.Errorf("the coordinator's keys from %s: %w", url, err)
	}
	k.verifier.Store(&token.Verifier{Keys: keys})
	return nil
}
