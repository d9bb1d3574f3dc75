// Package coordclient talks to the coordinator: it reads client configs,
// connects over HTTPS trusting the coordinator's certificate by fingerprint
// or CA, and wraps its API for the CLI and the exporter daemon. Its errors
// are one line that says what to do.
package coordclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	"github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1/coordinatorv1connect"
)

// dialTimeout bounds connecting to the coordinator, so an unreachable one
// is reported rather than waited on.
const dialTimeout = 10 * time.Second

// Client is a connection to the coordinator as one identity.
type Client struct {
	Endpoint string
	// Source names where the endpoint and token came from, for errors.
	Source    string
	Leases    coordinatorv1connect.ClientServiceClient
	Admin     coordinatorv1connect.AdminServiceClient
	Exporters coordinatorv1connect.ExporterServiceClient
	http      *http.Client
}

// Conn is what New needs: where the coordinator is, how to trust it, and
// the token to present.
type Conn struct {
	Endpoint string
	TLS      TLSConfig
	Token    string
	// Source names the config file, for errors; relative CA files are
	// resolved beside it.
	Source string
}

// FromClientConfig is the connection a client config describes.
func FromClientConfig(c *ClientConfig) Conn {
	return Conn{Endpoint: c.Endpoint, TLS: c.TLS, Token: c.Token, Source: c.Path}
}

// New returns a client; it connects on first use.
func New(c Conn) (*Client, error) {
	tlsConf, err := clientTLS(c.TLS, filepath.Dir(c.Source))
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: dialTimeout,
		IdleConnTimeout:     90 * time.Second,
	}}
	opts := connect.WithInterceptors(bearer(c.Token))
	return &Client{
		Endpoint:  c.Endpoint,
		Source:    c.Source,
		Leases:    coordinatorv1connect.NewClientServiceClient(hc, c.Endpoint, opts),
		Admin:     coordinatorv1connect.NewAdminServiceClient(hc, c.Endpoint, opts),
		Exporters: coordinatorv1connect.NewExporterServiceClient(hc, c.Endpoint, opts),
		http:      hc,
	}, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// HTTP is the client's HTTP client, trusting the coordinator as configured.
func (c *Client) HTTP() *http.Client { return c.http }

func bearer(token string) connect.Interceptor {
	return &bearerInterceptor{header: "Bearer " + token}
}

type bearerInterceptor struct{ header string }

func (b *bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", b.header)
		return next(ctx, req)
	}
}

func (b *bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", b.header)
		return conn
	}
}

func (b *bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// FingerprintError is a certificate, the coordinator's or the relay's, that
// is not the one trusted.
type FingerprintError struct {
	// Of is whose certificate it is, By who named the one to trust: the
	// coordinator and the config, or the relay and the coordinator.
	Of, By    string
	Want, Got string
}

func (e *FingerprintError) Error() string {
	return fmt.Sprintf("%s's certificate is %s, but %s trusts %s", e.Of, e.Got, e.By, e.Want)
}

func clientTLS(t TLSConfig, dir string) (*tls.Config, error) {
	if t.CAFile != "" {
		path := t.CAFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.caFile %s holds no PEM certificate", path)
		}
		return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
	}
	if t.CAFingerprint == "" {
		return nil, errors.New("tls: the config gives neither caFingerprint nor caFile")
	}
	return pinnedTLS(t.CAFingerprint, "the coordinator", "the config"), nil
}

// pinnedTLS trusts the certificate chains that hold the certificate of
// fingerprint: of's, as by named it.
func pinnedTLS(fingerprint, of, by string) *tls.Config {
	want := NormalizeFingerprint(fingerprint)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is checked below against the pinned fingerprint instead of
		// a CA: the coordinator's (and its relay's) certificate is
		// self-signed.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%s sent no certificate", of)
			}
			for _, c := range cs.PeerCertificates {
				if NormalizeFingerprint(certs.Fingerprint(c.Raw)) == want {
					return nil
				}
			}
			last := cs.PeerCertificates[len(cs.PeerCertificates)-1]
			return &FingerprintError{Of: of, By: by, Want: fingerprint, Got: certs.Fingerprint(last.Raw)}
		},
	}
}

// NormalizeFingerprint accepts a SHA-256 fingerprint as "sha256:hex",
// plain hex, or colon-separated hex in either case.
func NormalizeFingerprint(fp string) string {
	fp = strings.ToLower(strings.TrimSpace(fp))
	fp = strings.TrimPrefix(fp, "sha256:")
	return strings.ReplaceAll(fp, ":", "")
}
