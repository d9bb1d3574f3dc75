package coordinator

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
)

// maxDials bounds the sessions recorded on one lease: one per client key,
// and a client runs a few shells on one lease at most.
const maxDials = 16

// Dial issues a session token for one connection from the lease's client
// to its exporter: bound to the lease, to both peers (subject and
// audience), and to the client's key (cnf), expiring no later than the
// lease. It records the dial on the lease, so that the coordinator holding
// the exporter's status stream (this one or another sharing the store)
// gives the exporter a token for the same session. The relay and the
// exporter check tokens with the coordinator's JWKS.
func (c *Coordinator) Dial(ctx context.Context, who Identity, leaseName string, clientKey []byte) (*coordinatorv1.DialResponse, error) {
	if len(clientKey) != ed25519.PublicKeySize {
		return nil, invalid(fmt.Sprintf("the client's public key must be %d bytes of Ed25519, got %d", ed25519.PublicKeySize, len(clientKey)))
	}
	l, err := c.visibleLease(ctx, who, leaseName)
	if err != nil {
		return nil, err
	}
	if l.GetSpec().GetClient() != who.Name {
		return nil, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("lease %s belongs to client %s; only it can connect", leaseName, l.GetSpec().GetClient()))
	}
	if err := notReady(l); err != nil {
		return nil, err
	}
	st := l.GetStatus()
	e := c.cache.exporter(st.GetExporter())
	if e == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("exporter %s was deleted", st.GetExporter()))
	}
	if len(e.GetPublicKey()) == 0 {
		return nil, connect.NewError(connect.CodeUnavailable,
			fmt.Errorf("exporter %s has not registered a key yet; is `jmp run` up on it?", st.GetExporter()))
	}
	now := time.Now()
	exp := now.Add(c.cfg.SessionTTL)
	if end := st.GetEndTime().AsTime(); end.Before(exp) {
		exp = end
	}
	jkt := token.Thumbprint(clientKey)
	if err := c.recordDial(ctx, leaseName, who.Name, jkt, exp, now); err != nil {
		return nil, err
	}
	tok, err := c.keys.Sign(token.Session, sessionClaims(leaseName, who.Name, e.GetMetadata().GetName(), jkt, now, exp))
	if err != nil {
		return nil, asConnect("sign session token", err)
	}
	return &coordinatorv1.DialResponse{
		Token:             tok,
		Exporter:          e.GetMetadata().GetName(),
		ExporterPublicKey: e.GetPublicKey(),
		ExpireTime:        timestamp(exp),
		Relay:             c.cfg.Relay,
	}, nil
}

// notReady says why a lease cannot be dialed, nil if it can.
func notReady(l *coordinatorv1.Lease) error {
	st := l.GetStatus()
	if st.GetState() == coordinatorv1.LeaseState_LEASE_STATE_READY {
		return nil
	}
	name := l.GetMetadata().GetName()
	return connect.NewError(connect.CodeFailedPrecondition,
		fmt.Errorf("lease %s is %s (%s), not ready; wait for it with `jmp get leases %s`", name,
			stateText(st.GetState()), reasonText(st.GetReason()), name))
}

// recordDial records on the lease that the client's key has a session
// until exp: a dial of the same key replaces its entry (a renewal), and
// entries that expired go.
func (c *Coordinator) recordDial(ctx context.Context, leaseName, client, jkt string, exp, now time.Time) error {
	_, err := update(ctx, c, store.Leases, leaseName, func(l *coordinatorv1.Lease) error {
		if l.GetSpec().GetClient() != client {
			return connect.NewError(connect.CodePermissionDenied,
				fmt.Errorf("lease %s belongs to client %s; only it can connect", leaseName, l.GetSpec().GetClient()))
		}
		if err := notReady(l); err != nil {
			return err
		}
		st := l.GetStatus()
		dials := slices.DeleteFunc(st.Dials, func(d *coordinatorv1.LeaseDial) bool {
			return d.GetClientKeyThumbprint() == jkt || !d.GetExpireTime().AsTime().After(now)
		})
		dials = append(dials, &coordinatorv1.LeaseDial{ClientKeyThumbprint: jkt, ExpireTime: timestamp(exp)})
		if len(dials) > maxDials {
			// The sessions that expire first are likeliest to be over.
			slices.SortFunc(dials, func(a, b *coordinatorv1.LeaseDial) int {
				return a.GetExpireTime().AsTime().Compare(b.GetExpireTime().AsTime())
			})
			dials = dials[len(dials)-maxDials:]
		}
		st.Dials = dials
		return nil
	})
	if err != nil {
		return asConnect("record the dial on the lease", err)
	}
	return nil
}

// sessionClaims are the claims of a session token, the client's and the
// exporter's alike: the relay pairs the two by lease, client, exporter and
// client key.
func sessionClaims(lease, client, exporter, jkt string, now, exp time.Time) *token.Claims {
	return &token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   client,
			ID:        randomName() + randomName(),
			Audience:  jwt.ClaimStrings{token.ExporterAudience(exporter)},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		Lease:    lease,
		Client:   client,
		Exporter: exporter,
		Cnf:      &token.Confirmation{JKT: jkt},
	}
}

// dialKey names one session of a lease: its client's, with one key.
type dialKey struct{ lease, client, jkt string }

// grants tracks the session tokens one status stream has given its
// exporter, so that each dial (and each renewal) is given once.
type grants map[dialKey]time.Time

// sessionTokens mints the exporter's tokens for the dials of lease l (the
// lease it serves, nil for none) that the stream has not given it yet,
// and forgets the dials of other leases and clients.
func (c *Coordinator) sessionTokens(exporter string, l *coordinatorv1.Lease, sent grants) []string {
	lease, client := l.GetMetadata().GetName(), l.GetSpec().GetClient()
	for k := range sent {
		if k.lease != lease || k.client != client {
			delete(sent, k)
		}
	}
	if l == nil {
		return nil
	}
	now := time.Now()
	end := l.GetStatus().GetEndTime().AsTime()
	var toks []string
	for _, d := range l.GetStatus().GetDials() {
		k := dialKey{lease, client, d.GetClientKeyThumbprint()}
		exp := d.GetExpireTime().AsTime()
		if !exp.After(now) || !sent[k].Before(exp) {
			continue
		}
		tokExp := exp
		if end.Before(tokExp) {
			tokExp = end
		}
		tok, err := c.keys.Sign(token.Session, sessionClaims(lease, client, exporter, k.jkt, now, tokExp))
		if err != nil {
			c.log.Warn("sign the exporter's session token", "exporter", exporter, "lease", lease, "err", err)
			continue
		}
		sent[k] = exp
		toks = append(toks, tok)
	}
	return toks
}

// stateText is a state for people: "pending" for PENDING.
func stateText(s coordinatorv1.LeaseState) string {
	switch s {
	case coordinatorv1.LeaseState_LEASE_STATE_PENDING:
		return "pending"
	case coordinatorv1.LeaseState_LEASE_STATE_READY:
		return "ready"
	case coordinatorv1.LeaseState_LEASE_STATE_ENDED:
		return "ended"
	}
	return "unknown"
}

// JWKS is the public signing keys, for whoever checks session tokens.
func (c *Coordinator) JWKS() ([]byte, error) { return c.keys.JWKS() }

// Issuer is the issuer of the coordinator's tokens.
func (c *Coordinator) Issuer() string { return c.keys.Issuer() }

// Tokens checks the coordinator's tokens with its own keys, as the relay
// built into it does.
func (c *Coordinator) Tokens() *token.Keyring { return c.keys }
