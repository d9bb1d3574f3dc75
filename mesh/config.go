package mesh

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
)

// Relay says where the relay is and how to know it.
type Relay struct {
	// UDP is the relay's QUIC port, "host:port"; relayed packets go there
	// too.
	UDP string
	// ProbeUDP is the relay's second UDP port, for telling a symmetric NAT
	// from an endpoint-independent one; empty skips the check.
	ProbeUDP string
	// TCP is the relay's TLS over TCP port, for networks that block UDP;
	// empty means none.
	TCP string
	// TLS checks the relay's certificate (RootCAs, ServerName). The mesh
	// adds the protocol and this peer's certificate.
	TLS *tls.Config
}

// Network is how a peer reaches the network. The zero value uses the
// host's.
type Network struct {
	// PacketConn is the peer's one UDP socket, for the relay link, punch
	// packets and the direct connection alike; nil opens one on ":0". The
	// mesh closes it.
	PacketConn net.PacketConn
	// DialTCP opens a TCP connection to the relay; nil uses net.Dialer.
	DialTCP func(ctx context.Context, addr string) (net.Conn, error)
	// LocalAddrs are the host's addresses to offer for a direct path (the
	// socket's port goes with them); nil lists the interfaces' addresses,
	// loopback and link-local left out.
	LocalAddrs []netip.Addr
	// PublicAddrs are addresses the peer is reachable at from anywhere,
	// such as a port forward.
	PublicAddrs []netip.AddrPort
}

// DialConfig configures a client's session.
type DialConfig struct {
	// Key is the client's key: the session token is bound to it.
	Key ed25519.PrivateKey
	// Exporter is the exporter's name, as the coordinator's Dial answered.
	Exporter string
	// ExporterKey is the exporter's key as the coordinator pinned it; the
	// session fails if anyone else answers.
	ExporterKey ed25519.PublicKey
	// Token returns the session token. It is called once to start, and
	// again before the token expires to renew it; a token that expires no
	// later than the last one means the lease is ending.
	Token func(ctx context.Context) (string, error)
	Relay Relay
	// Network is the client's side of the network.
	Network Network
	// Path forces a path, for debugging and benchmarks.
	Path   PathPolicy
	Logger *slog.Logger
}

// TokenVerifier checks the coordinator's session tokens: a *token.Verifier
// built from the coordinator's JWKS.
type TokenVerifier interface {
	Verify(raw string, kind token.Kind, audience string, now time.Time) (*token.Claims, error)
}

// ListenConfig configures an exporter's side of the mesh.
type ListenConfig struct {
	// Key is the exporter's key, which the coordinator pins.
	Key ed25519.PrivateKey
	// Name is the exporter's name: session tokens are for it.
	Name string
	// Tokens checks session tokens.
	Tokens TokenVerifier
	Relay  Relay
	// Network is the exporter's side of the network.
	Network Network
	Logger  *slog.Logger
}

func (r *Relay) check() error {
	if r.UDP == "" && r.TCP == "" {
		return errors.New("mesh: the relay has neither a UDP nor a TCP address: set Relay.UDP (and Relay.TCP)")
	}
	if r.TLS == nil {
		return errors.New("mesh: no way to check the relay's certificate: set Relay.TLS (RootCAs, ServerName)")
	}
	return nil
}

func checkKey(key ed25519.PrivateKey, whose string) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("mesh: the %s key must be an Ed25519 private key of %d bytes, got %d", whose, ed25519.PrivateKeySize, len(key))
	}
	return nil
}

func (c *DialConfig) check() error {
	if err := checkKey(c.Key, "client"); err != nil {
		return err
	}
	if len(c.ExporterKey) != ed25519.PublicKeySize {
		return fmt.Errorf("mesh: the exporter's pinned key must be an Ed25519 public key of %d bytes, got %d; take it from the coordinator's Dial answer",
			ed25519.PublicKeySize, len(c.ExporterKey))
	}
	if c.Exporter == "" {
		return errors.New("mesh: no exporter name: take it from the coordinator's Dial answer")
	}
	if c.Token == nil {
		return errors.New("mesh: no token source: set DialConfig.Token")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c.Relay.check()
}

func (c *ListenConfig) check() error {
	if err := checkKey(c.Key, "exporter"); err != nil {
		return err
	}
	if c.Name == "" {
		return errors.New("mesh: no exporter name: set ListenConfig.Name")
	}
	if c.Tokens == nil {
		return errors.New("mesh: no token verifier: set ListenConfig.Tokens from the coordinator's JWKS")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c.Relay.check()
}
