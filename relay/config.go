package relay

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
)

// TokenVerifier checks the coordinator's session tokens; a
// *token.Verifier built from the coordinator's JWKS, or its *token.Keyring
// when the relay runs inside the coordinator.
type TokenVerifier interface {
	Verify(raw string, kind token.Kind, audience string, now time.Time) (*token.Claims, error)
}

// Config configures a Relay.
type Config struct {
	// TLS holds the relay's certificate, for QUIC and TLS over TCP links.
	// The relay adds its ALPN and asks every peer for a certificate.
	TLS *tls.Config
	// Tokens checks session tokens.
	Tokens TokenVerifier
	Limits Limits
	// Registerer takes the relay's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// StatelessResetKey, kept across restarts, lets a restarted relay
	// reset its peers' old QUIC links at their next packet, so they
	// reconnect at once instead of after an idle timeout.
	StatelessResetKey *quic.StatelessResetKey
}

// Limits keep one peer or one session from starving the others. A zero
// field takes its default; bandwidths are bytes per second, and a negative
// one means unlimited.
type Limits struct {
	// MaxLinks bounds the peers connected at once.
	MaxLinks int
	// MaxSessionsPerPeer bounds the sessions one client or exporter (by
	// name) is in at once.
	MaxSessionsPerPeer int
	// PeerBandwidth bounds what one client or exporter sends through the
	// relay, all its sessions together.
	PeerBandwidth int64
	// SessionBandwidth bounds what one session sends through the relay,
	// both directions together.
	SessionBandwidth int64
}

// Defaults. Bandwidth is unlimited unless configured: the relay has no way
// to know its uplink, and a limit below it only slows sessions down.
const (
	defaultMaxLinks           = 10000
	defaultMaxSessionsPerPeer = 64
)

func (c *Config) check() error {
	if c.TLS == nil || (len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil) {
		return errors.New("relay: no TLS certificate: set Config.TLS")
	}
	if c.Tokens == nil {
		return errors.New("relay: no token verifier: set Config.Tokens to the coordinator's keys")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Limits.MaxLinks == 0 {
		c.Limits.MaxLinks = defaultMaxLinks
	}
	if c.Limits.MaxSessionsPerPeer == 0 {
		c.Limits.MaxSessionsPerPeer = defaultMaxSessionsPerPeer
	}
	return nil
}
