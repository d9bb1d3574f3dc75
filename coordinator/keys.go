package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
)

// keyCheckInterval is how often the coordinator looks for a signing key
// due for rotation or retirement: rotation periods are days.
const keyCheckInterval = time.Hour

// reloadKeys gives the keyring the signing keys in the cache, if they
// changed.
func (c *Coordinator) reloadKeys() {
	recs, changed := c.cache.signingKeys()
	if !changed {
		return
	}
	keys := make([]token.Key, 0, len(recs))
	for _, r := range recs {
		if len(r.GetSeed()) != ed25519.SeedSize {
			c.log.Error("ignoring a malformed signing key", "kid", r.GetMetadata().GetName())
			continue
		}
		keys = append(keys, token.Key{
			ID:         r.GetMetadata().GetName(),
			Private:    ed25519.NewKeyFromSeed(r.GetSeed()),
			Created:    r.GetMetadata().GetCreateTime().AsTime(),
			RetireTime: optTime(r.GetRetireTime()),
		})
	}
	c.keys.SetKeys(keys, time.Now())
}

// ensureSigningKey makes the first key on a new store.
func (c *Coordinator) ensureSigningKey(ctx context.Context) error {
	if c.keys.SigningKeyID() != "" {
		return nil
	}
	_, err := c.RotateSigningKey(ctx)
	return err
}

// RotateSigningKey makes a new key that signs from now on. The keys before
// it keep verifying until every token they signed has expired.
func (c *Coordinator) RotateSigningKey(ctx context.Context) (string, error) {
	now := time.Now()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return "", fmt.Errorf("generate signing key: %w", err)
	}
	kid := now.UTC().Format("20060102") + "-" + randomName()
	rec := &coordinatorv1.SigningKey{Metadata: newMeta(kid, nil, now), Seed: seed}
	if err := c.create(ctx, rec); err != nil {
		return "", asConnect("store signing key", err)
	}
	retire := now.Add(c.cfg.TokenLifetime)
	for _, r := range c.signingRecords() {
		if r.GetMetadata().GetName() == kid || r.GetRetireTime() != nil {
			continue
		}
		_, err := update(ctx, c, store.SigningKeys, r.GetMetadata().GetName(), func(k *coordinatorv1.SigningKey) error {
			if k.GetRetireTime() != nil {
				return errNoChange
			}
			k.RetireTime = timestamp(retire)
			return nil
		})
		if err != nil {
			return "", asConnect("retire signing key", err)
		}
	}
	c.reloadKeys()
	c.log.Info("signing key rotated", "kid", kid)
	return kid, nil
}

func (c *Coordinator) signingRecords() []*coordinatorv1.SigningKey {
	c.cache.mu.RLock()
	defer c.cache.mu.RUnlock()
	out := make([]*coordinatorv1.SigningKey, 0, len(c.cache.keys))
	for _, k := range c.cache.keys {
		out = append(out, k)
	}
	return out
}

// keyLoop reloads the keyring when keys change, rotates the signing key
// when it is due, and deletes keys past retirement.
func (c *Coordinator) keyLoop(ctx context.Context) {
	timer := time.NewTimer(keyCheckInterval)
	defer timer.Stop()
	for {
		select {
		case <-c.keysCh:
			c.reloadKeys()
		case <-timer.C:
			c.maintainKeys(ctx)
			timer.Reset(keyCheckInterval)
		case <-ctx.Done():
			return
		}
	}
}

func (c *Coordinator) maintainKeys(ctx context.Context) {
	now := time.Now()
	newest := time.Time{}
	for _, r := range c.signingRecords() {
		if t := r.GetRetireTime(); t != nil && !now.Before(t.AsTime()) {
			if err := c.remove(ctx, r); err != nil {
				c.log.Warn("delete retired signing key", "kid", r.GetMetadata().GetName(), "err", err)
			}
			continue
		}
		if r.GetRetireTime() == nil && r.GetMetadata().GetCreateTime().AsTime().After(newest) {
			newest = r.GetMetadata().GetCreateTime().AsTime()
		}
	}
	if now.Sub(newest) >= c.cfg.KeyRotation {
		if _, err := c.RotateSigningKey(ctx); err != nil {
			c.log.Warn("rotate signing key; will retry", "err", err)
		}
	}
	c.reloadKeys()
}
