package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	"github.com/jumpmesh/jumpmesh/coordinator/relayhost"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/store/boltstore"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/jumpmesh/jumpmesh/relay"
)

// RunOptions configure a coordinator process.
type RunOptions struct {
	// DataDir holds the embedded store, the TLS certificate Run made, and
	// admin.yaml.
	DataDir string
	// Store keeps the records; nil opens the embedded store in DataDir.
	// Run does not close it. If it implements AdminConfigKeeper, the first
	// admin's client config goes there instead of DataDir/admin.yaml.
	Store store.Store
	// OnStart, if set, runs in a goroutine of its own once the coordinator
	// is up, until the context it gets ends as Run returns; Run waits for
	// it. For work beside serving, such as kubestore's RunCredentials.
	OnStart func(ctx context.Context, c *Coordinator, ep *coordinatorv1.Endpoint)
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
	// Relay says which relay clients and exporters meet at.
	Relay  RelayOptions
	Config Config
	Logger *slog.Logger
}

// RelayOptions say which relay the coordinator hands out: one built in,
// with its certificate and signing keys (the default), one run apart, or
// none.
type RelayOptions struct {
	// Endpoint is a relay run apart (`jmp relay`) to hand out instead of
	// the built-in one.
	Endpoint *coordinatorv1.RelayEndpoint
	// Off runs no built-in relay.
	Off bool
	// Listen are the built-in relay's addresses. An empty UDP takes the
	// coordinator's listen address (the same port, over UDP); an empty
	// ProbeUDP or TCP the next port up.
	Listen relayhost.Addrs
	// Host is where peers reach the built-in relay; empty takes the
	// advertised URL's host.
	Host   string
	Limits relay.Limits
}

// shutdownGrace is how long open calls get to finish when the process
// stops; streams are cancelled at once.
const shutdownGrace = 5 * time.Second

// AdminConfigKeeper is a store that keeps the first admin's client config
// itself, where admins can fetch it (kubestore: in a Secret).
type AdminConfigKeeper interface {
	// SaveAdminConfig stores config and says where, for the log.
	SaveAdminConfig(ctx context.Context, config []byte) (where string, err error)
}

// Run runs a coordinator until ctx ends.
func Run(ctx context.Context, o RunOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st := o.Store
	if st == nil {
		bolt, err := boltstore.Open(filepath.Join(o.DataDir, "store.db"))
		if err != nil {
			return err
		}
		defer bolt.Close()
		st = bolt
	}

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
	cfg.Store, cfg.Endpoint, cfg.Logger, cfg.Relay = st, endpoint, log, o.Relay.Endpoint
	var relaySockets *relayhost.Host
	if cfg.Relay == nil && !o.Relay.Off {
		if relaySockets, err = relayhost.Listen(relayAddrs(o.Relay.Listen, ln.Addr())); err != nil {
			return fmt.Errorf("built-in %w; pick other ports with --relay-udp, --relay-probe-udp and --relay-tcp, or run none with --relay=false", err)
		}
		defer relaySockets.Close()
		host := o.Relay.Host
		if host == "" {
			u, err := url.Parse(endpoint.GetUrl())
			if err != nil {
				return fmt.Errorf("advertised URL %q: %w", endpoint.GetUrl(), err)
			}
			host = u.Hostname()
		}
		cfg.Relay = relaySockets.Endpoint(host, endpoint.GetCaFingerprint())
	}
	c, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if relaySockets != nil {
		stop, err := c.serveRelay(ctx, relaySockets, cert, o.Relay.Limits)
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := saveAdminConfig(ctx, c, st, o.DataDir, endpoint, log); err != nil {
		return err
	}
	if o.OnStart != nil {
		startCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			o.OnStart(startCtx, c, endpoint)
		}()
		defer func() {
			stop()
			<-done
		}()
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

// relayAddrs fills in the built-in relay's default addresses from the
// coordinator's: the same host, UDP on the same port, the probe port and
// TCP on the next.
func relayAddrs(a relayhost.Addrs, coord net.Addr) relayhost.Addrs {
	host, portText, _ := net.SplitHostPort(coord.String())
	port, _ := strconv.Atoi(portText)
	at := func(p int) string { return net.JoinHostPort(host, strconv.Itoa(p%(1<<16))) }
	if a.UDP == "" {
		a.UDP = at(port)
	}
	if a.ProbeUDP == "" {
		a.ProbeUDP = at(port + 1)
	}
	if a.TCP == "" {
		a.TCP = at(port + 1)
	}
	return a
}

// serveRelay serves the built-in relay on h, with the coordinator's
// certificate and keys and its metrics registry, until the returned stop.
func (c *Coordinator) serveRelay(ctx context.Context, h *relayhost.Host, cert tls.Certificate, limits relay.Limits) (stop func(), err error) {
	reset, err := relayhost.ResetKey(cert)
	if err != nil {
		return nil, err
	}
	r, err := relay.New(relay.Config{
		TLS:               &tls.Config{Certificates: []tls.Certificate{cert}},
		Tokens:            c.keys,
		Limits:            limits,
		Registerer:        c.m.Registerer(),
		Logger:            c.log.With("part", "relay"),
		StatelessResetKey: reset,
	})
	if err != nil {
		return nil, fmt.Errorf("built-in relay: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.Serve(rctx, r); err != nil {
			c.log.Error("the built-in relay stopped", "err", err)
		}
	}()
	ep := c.cfg.Relay
	c.log.Info("built-in relay up", "udp", ep.GetUdp(), "probe_udp", ep.GetProbeUdp(), "tcp", ep.GetTcp())
	return func() {
		cancel()
		<-done
	}, nil
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

// saveAdminConfig saves the admin's client config, to the store if it
// keeps it or else to DataDir/admin.yaml, when this start made the first
// admin.
func saveAdminConfig(ctx context.Context, c *Coordinator, st store.Store, dir string, ep *coordinatorv1.Endpoint, log *slog.Logger) error {
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
	if keeper, ok := st.(AdminConfigKeeper); ok {
		data, err := cfg.Marshal()
		if err != nil {
			return fmt.Errorf("write admin config: %w", err)
		}
		where, err := keeper.SaveAdminConfig(ctx, data)
		if err != nil {
			return fmt.Errorf("write admin config: %w", err)
		}
		log.Info("saved the admin client config; use it with JMP_CLIENT_CONFIG or `jmp config client import`", "where", where)
		return nil
	}
	path := filepath.Join(dir, "admin.yaml")
	if err := cfg.Save(path); err != nil {
		return fmt.Errorf("write admin config: %w", err)
	}
	log.Info("wrote the admin client config; use it with JMP_CLIENT_CONFIG or `jmp config client import`", "path", path)
	return nil
}
