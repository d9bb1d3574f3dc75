// Package identity turns the Ed25519 keys that name mesh peers into TLS
// certificates and back. A certificate here is only a carrier for its key:
// self-signed, never checked against a CA or a clock; what a peer trusts is
// the key, pinned by the coordinator (an exporter's) or bound into a session
// token (a client's).
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// validity is long enough never to matter: nobody checks it.
const validity = 100 * 365 * 24 * time.Hour

// Certificate returns a self-signed certificate for key.
func Certificate(key ed25519.PrivateKey) (tls.Certificate, error) {
	if len(key) != ed25519.PrivateKeySize {
		return tls.Certificate{}, fmt.Errorf("identity key: want an Ed25519 private key of %d bytes, got %d", ed25519.PrivateKeySize, len(key))
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "jumpmesh peer"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Unix(0, 0).Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ErrNoKey is returned for a peer that showed no Ed25519 certificate.
var ErrNoKey = errors.New("the peer showed no Ed25519 certificate")

// PeerKey returns the Ed25519 key of the peer's certificate. TLS has
// already checked that the peer holds its private key.
func PeerKey(cs tls.ConnectionState) (ed25519.PublicKey, error) {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return nil, ErrNoKey
	}
	pub, ok := certs[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w (it has a %T key)", ErrNoKey, certs[0].PublicKey)
	}
	return pub, nil
}
