package mesh

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"sync/atomic"
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/mesh/identity"
	"github.com/stretchr/testify/require"
)

// state is the TLS state of a handshake with a peer holding key, for
// server name.
func state(t *testing.T, serverName string, key ed25519.PrivateKey) tls.ConnectionState {
	cs := tls.ConnectionState{ServerName: serverName}
	if key != nil {
		cert, err := identity.Certificate(key)
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		require.NoError(t, err)
		cs.PeerCertificates = []*x509.Certificate{leaf}
	}
	return cs
}

func newKey(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

// TestExporterChecksClient: an exporter accepts a connection only from the
// key its session's token is bound to, for a session it has.
func TestExporterChecksClient(t *testing.T) {
	p, err := newPeer(relayv1.Role_ROLE_EXPORTER, newKey(t), Relay{}, Network{}, nil)
	require.NoError(t, err)
	defer p.close()
	clientKey, stranger := newKey(t), newKey(t)
	const session = "s0123.jumpmesh"
	conf := p.serverTLS(func(name string) (string, bool) {
		if name != session {
			return "", false
		}
		return token.Thumbprint(clientKey.Public().(ed25519.PublicKey)), true
	})
	tests := []struct {
		name       string
		serverName string
		key        ed25519.PrivateKey
		ok         bool
	}{
		{"the session's client", session, clientKey, true},
		{"another key", session, stranger, false},
		{"another session", "s4567.jumpmesh", clientKey, false},
		{"no certificate", session, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := conf.VerifyConnection(state(t, tt.serverName, tt.key))
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

// TestClientChecksExporter: a client accepts only the pinned exporter key.
func TestClientChecksExporter(t *testing.T) {
	p, err := newPeer(relayv1.Role_ROLE_CLIENT, newKey(t), Relay{}, Network{}, nil)
	require.NoError(t, err)
	defer p.close()
	exporterKey, impostor := newKey(t), newKey(t)
	var mismatch atomic.Bool
	conf := p.clientTLS("s.jumpmesh", exporterKey.Public().(ed25519.PublicKey), &mismatch)
	require.NoError(t, conf.VerifyConnection(state(t, "", exporterKey)))
	require.False(t, mismatch.Load())
	require.ErrorIs(t, conf.VerifyConnection(state(t, "", impostor)), ErrExporterKey)
	require.True(t, mismatch.Load())
	require.ErrorIs(t, conf.VerifyConnection(state(t, "", nil)), identity.ErrNoKey)
}
