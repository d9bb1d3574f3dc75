package coordinator

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
)

// Dial issues a session token for one connection from the lease's client
// to its exporter: bound to the lease, to both peers (subject and
// audience), and to the client's key (cnf), expiring no later than the
// lease. The exporter checks it with the coordinator's JWKS.
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
	st := l.GetStatus()
	if st.GetState() != coordinatorv1.LeaseState_LEASE_STATE_READY {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("lease %s is %s (%s), not ready; wait for it with `jmp get leases %s`", leaseName,
				stateText(st.GetState()), reasonText(st.GetReason()), leaseName))
	}
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
	tok, err := c.keys.Sign(token.Session, &token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   who.Name,
			ID:        randomName() + randomName(),
			Audience:  jwt.ClaimStrings{token.ExporterAudience(e.GetMetadata().GetName())},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		Lease:    leaseName,
		Client:   who.Name,
		Exporter: e.GetMetadata().GetName(),
		Cnf:      &token.Confirmation{JKT: token.Thumbprint(clientKey)},
	})
	if err != nil {
		return nil, asConnect("sign session token", err)
	}
	return &coordinatorv1.DialResponse{
		Token:             tok,
		Exporter:          e.GetMetadata().GetName(),
		ExporterPublicKey: e.GetPublicKey(),
		ExpireTime:        timestamp(exp),
	}, nil
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
