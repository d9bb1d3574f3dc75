package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	"github.com/jumpmesh/jumpmesh/coordinator/store/boltstore"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
)

// RunOptions configure a coordinator process.
type RunOptions struct {
	// DataDir holds the store, the TLS certificate it made, and admin.yaml.
	DataDir string
	// Listen is the address to serve on.
	Listen string
	// Advertise is the URL clients use (https://host:port); by default the
	// listen address, or this host's name when listening on all addresses.
	Advertise string
	// TLSCert and TLSKey are PEM files to serve; by default a self-signed
	// certificate is made in DataDir on first start.
	TLSCert, TLSKey string
	// Extra host names or addresses for the self-signed certificate.
	TLSHosts []string
	Config   Config
	Logger   *slog.Logger
}

// shutdownGrace is how long open calls get to finish when the process
// stops; streams are cancelled at once.
const shutdownGrace = 5 * time.Second

// Run runs a coordinator with the embedded store until ctx ends.
func Run(ctx context.Context, o RunOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := boltstore.Open(filepath.Join(o.DataDir, "store.db"))
	if err != nil {
		return err
	}
	defer st.Close()

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; pick another address with --listen", o.Listen, err)
	}
	defer ln.Close()
	cert, err := loadCert(o, ln.Addr())
	if err != nil {
		return err
	}
	endpoint := &coordinatorv1.Endpoint{Url: advertise(o.Advertise, ln.Addr()), CaFingerprint: certs.ChainFingerprint(cert)}

	cfg := o.Config
	cfg.Store, cfg.Endpoint, cfg.Logger = st, endpoint, log
	c, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := writeAdminConfig(ctx, c, o.DataDir, endpoint, log); err != nil {
		return err
	}

	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           c.Handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	log.Info("coordinator listening", "addr", ln.Addr().String(), "endpoint", endpoint.GetUrl(),
		"ca_fingerprint", endpoint.GetCaFingerprint(), "data_dir", o.DataDir)
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("coordinator stopping")
	cancelBase() // ends the streams, which would hold Shutdown up
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func loadCert(o RunOptions, addr net.Addr) (tls.Certificate, error) {
	if o.TLSCert != "" || o.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
		return cert, nil
	}
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, o.TLSHosts...)
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
		hosts = append(hosts, tcp.IP.String())
	}
	return certs.LoadOrCreate(o.DataDir, hosts)
}

// advertise is the URL clients are told to use.
func advertise(given string, addr net.Addr) string {
	if given != "" {
		return given
	}
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "https://" + net.JoinHostPort(host, port)
}

// writeAdminConfig writes DataDir/admin.yaml when this start made the
// first admin.
func writeAdminConfig(ctx context.Context, c *Coordinator, dir string, ep *coordinatorv1.Endpoint, log *slog.Logger) error {
	tok, created, err := c.BootstrapAdmin(ctx)
	if err != nil || !created {
		return err
	}
	cfg := &coordclient.ClientConfig{
		APIVersion: coordclient.APIVersion,
		Kind:       coordclient.KindClientConfig,
		Metadata:   coordclient.Metadata{Name: AdminName},
		Endpoint:   ep.GetUrl(),
		TLS:        coordclient.TLSConfig{CAFingerprint: ep.GetCaFingerprint()},
		Token:      tok,
	}
	path := filepath.Join(dir, "admin.yaml")
	if err := cfg.Save(path); err != nil {
		return fmt.Errorf("write admin config: %w", err)
	}
	log.Info("wrote the admin client config; use it with JMP_CLIENT_CONFIG or `jmp config client import`", "path", path)
	return nil
}
