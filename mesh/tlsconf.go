package mesh

import (
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/mesh/identity"
	"github.com/quic-go/quic-go"
)

// ALPN is the TLS application protocol of end-to-end connections.
const ALPN = "jumpmesh/1"

// End-to-end connection timers.
const (
	// e2eKeepAlive keeps a quiet session's QUIC state and NAT mappings
	// alive; a third of the idle timeout.
	e2eKeepAlive = 10 * time.Second
	// e2eIdleTimeout ends a connection that hears nothing for this long:
	// the peer is gone. Longer than a path move takes (a few seconds), so
	// a move never loses the connection.
	e2eIdleTimeout = 30 * time.Second
)

// Flow-control windows of end-to-end connections. quic-go grows a window
// from its initial size to its maximum as the bandwidth-delay product asks;
// starting at 2 MiB skips the slow growth on a fast path, and the maximums
// hold a 1 Gbit/s path with 100 ms of round trip. Memory is not a concern
// at a handful of sessions per exporter.
const (
	initialStreamWindow = 2 << 20
	maxStreamWindow     = 16 << 20
	initialConnWindow   = 4 << 20
	maxConnWindow       = 32 << 20
)

// maxStreams bounds the streams a client has open on an exporter at once:
// each driver call and byte stream is one, and `j` runs few at a time.
const maxStreams = 1000

// e2eConfig is the QUIC configuration of end-to-end connections. Only the
// client opens streams.
func e2eConfig(exporter bool) *quic.Config {
	c := &quic.Config{
		MaxIdleTimeout:                 e2eIdleTimeout,
		KeepAlivePeriod:                e2eKeepAlive,
		HandshakeIdleTimeout:           e2eIdleTimeout,
		InitialStreamReceiveWindow:     initialStreamWindow,
		MaxStreamReceiveWindow:         maxStreamWindow,
		InitialConnectionReceiveWindow: initialConnWindow,
		MaxConnectionReceiveWindow:     maxConnWindow,
		MaxIncomingStreams:             -1,
		MaxIncomingUniStreams:          -1,
	}
	if exporter {
		c.MaxIncomingStreams = maxStreams
		c.MaxIncomingUniStreams = 1 // the control stream
	}
	return c
}

// clientTLS is a client's end-to-end TLS: its own key, and the exporter's
// pinned. A key mismatch sets mismatch, since quic-go does not keep the
// error's identity.
func (p *peer) clientTLS(serverName string, exporterKey ed25519.PublicKey, mismatch *atomic.Bool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert},
		ServerName:   serverName,
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
		// No CA: the exporter's certificate only carries its key, which
		// VerifyConnection checks against the pinned one.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			key, err := identity.PeerKey(cs)
			if err != nil {
				return err
			}
			if !key.Equal(exporterKey) {
				mismatch.Store(true)
				return ErrExporterKey
			}
			return nil
		},
	}
}

// serverTLS is an exporter's end-to-end TLS: its own key, and the client's
// checked against the session its server name names.
func (p *peer) serverTLS(clientKeyOf func(serverName string) (jkt string, ok bool)) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			jkt, ok := clientKeyOf(cs.ServerName)
			if !ok {
				return fmt.Errorf("no session %q on this exporter", cs.ServerName)
			}
			key, err := identity.PeerKey(cs)
			if err != nil {
				return err
			}
			if token.Thumbprint(key) != jkt {
				return fmt.Errorf("the client's key is not the one its session token is bound to")
			}
			return nil
		},
	}
}
