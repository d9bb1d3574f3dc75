package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	"github.com/jumpmesh/jumpmesh/coordinator/relayhost"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// noTCP turns the relay's TLS over TCP port off.
const noTCP = "off"

func newRelayCmd() *cobra.Command {
	var (
		coordURL, coordFP, coordCA, clientConfig string
		addrs                                    relayhost.Addrs
		advertise, dataDir, tlsCert, tlsKey      string
		metricsAddr                              string
		limits                                   relay.Limits
		logLevel                                 slog.Level
	)
	cmd := &cobra.Command{
		Use:   "relay (--coordinator URL --coordinator-fingerprint FP | --client-config FILE) [--listen ADDR]",
		Short: "Run a relay apart from the coordinator",
		Long: `Run the mesh relay on its own: where clients and exporters meet, learn each
other's addresses for a direct path, and send their packets when none opens.
It sees only ciphertext. The coordinator runs one built in; run this one
instead when several coordinator replicas share a store (they must all hand
out one relay), or to put the relay elsewhere.

It checks session tokens with the coordinator's public keys, fetched from its
JWKS over its pinned certificate (--coordinator and --coordinator-fingerprint,
or the endpoint and tls of a --client-config), and fetched again when a token
names a newer key. Its own certificate is self-signed in --data-dir unless
given --tls-cert and --tls-key. It logs the --relay-endpoint value to give
every coordinator.`,
		Example: `  jmp relay --coordinator https://coord.example.com:8443 --coordinator-fingerprint sha256:... \
    --listen :4433 --advertise relay.example.com
  jmp coordinator --relay-endpoint udp=relay.example.com:4433,probe=relay.example.com:4434,tcp=relay.example.com:4433,fingerprint=sha256:...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: logLevel}))
			conn, err := relayCoordinator(coordURL, coordFP, coordCA, clientConfig)
			if err != nil {
				return err
			}
			c, err := coordclient.New(conn)
			if err != nil {
				return err
			}
			defer c.Close()
			if addrs, err = relayListenAddrs(addrs); err != nil {
				return err
			}
			if advertise == "" {
				if advertise, err = os.Hostname(); err != nil {
					return fmt.Errorf("find this host's name for --advertise: %w", err)
				}
			}
			cert, err := relayCert(tlsCert, tlsKey, dataDir, advertise)
			if err != nil {
				return err
			}
			return serveRelay(cmd.Context(), relayServer{
				coord: c, addrs: addrs, advertise: advertise, cert: cert,
				metrics: metricsAddr, limits: limits, log: log,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&coordURL, "coordinator", "", "the coordinator's URL, https://HOST:PORT, whose session tokens the relay checks")
	f.StringVar(&coordFP, "coordinator-fingerprint", "", "the coordinator's certificate fingerprint, sha256:HEX, as its log shows")
	f.StringVar(&coordCA, "coordinator-ca", "", "a PEM file of the CA that signed the coordinator's certificate, instead of its fingerprint")
	f.StringVar(&clientConfig, "client-config", "", "take the coordinator's URL and certificate from this client config `FILE` instead")
	f.StringVar(&addrs.UDP, "listen", ":4433", "UDP address of the QUIC port, where relayed packets go too")
	f.StringVar(&addrs.ProbeUDP, "listen-probe", "", "UDP address of the second port, which tells NAT types apart (default --listen's port + 1)")
	f.StringVar(&addrs.TCP, "listen-tcp", "", "TCP address of the TLS port, for networks that block UDP (default --listen's, over TCP; off for none)")
	f.StringVar(&advertise, "advertise", "", "host name or address peers reach the relay at (default this host's name)")
	f.StringVar(&dataDir, "data-dir", defaultStateDir("relay"), "where the self-signed certificate lives")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate (chain) to serve instead of a self-signed one")
	f.StringVar(&tlsKey, "tls-key", "", "PEM key of --tls-cert")
	f.StringVar(&metricsAddr, "metrics", "", "serve Prometheus metrics over HTTP at this address, e.g. :9090 (default none)")
	relayLimitFlags(f, &limits, "")
	f.TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	return cmd
}

// relayCoordinator is the connection to the coordinator the flags name.
// The relay only fetches the public keys: it needs no token.
func relayCoordinator(url, fingerprint, ca, clientConfig string) (coordclient.Conn, error) {
	if clientConfig != "" {
		if url != "" || fingerprint != "" || ca != "" {
			return coordclient.Conn{}, errors.New("give --client-config or --coordinator with its certificate, not both")
		}
		cfg, err := coordclient.LoadClientConfig(clientConfig)
		if err != nil {
			return coordclient.Conn{}, err
		}
		conn := coordclient.FromClientConfig(cfg)
		conn.Token = ""
		return conn, nil
	}
	switch {
	case url == "":
		return coordclient.Conn{}, errors.New("say whose tokens to check: --coordinator https://HOST:PORT with --coordinator-fingerprint, or --client-config FILE")
	case (fingerprint == "") == (ca == ""):
		return coordclient.Conn{}, errors.New("say how to trust the coordinator: --coordinator-fingerprint sha256:HEX (its log shows it) or --coordinator-ca FILE")
	}
	return coordclient.Conn{Endpoint: url, TLS: coordclient.TLSConfig{CAFingerprint: fingerprint, CAFile: ca}, Source: "--coordinator"}, nil
}

// relayListenAddrs fills in the default probe and TCP addresses from the
// QUIC one.
func relayListenAddrs(a relayhost.Addrs) (relayhost.Addrs, error) {
	host, portText, err := net.SplitHostPort(a.UDP)
	if err != nil {
		return a, fmt.Errorf("--listen %q: want HOST:PORT or :PORT", a.UDP)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port >= 1<<16-1 {
		return a, fmt.Errorf("--listen %q: want a port from 1 to 65534 (the probe port is the next one)", a.UDP)
	}
	if a.ProbeUDP == "" {
		a.ProbeUDP = net.JoinHostPort(host, strconv.Itoa(port+1))
	}
	switch a.TCP {
	case "":
		a.TCP = a.UDP
	case noTCP:
		a.TCP = ""
	}
	return a, nil
}

// relayCert is the relay's certificate: the one given, or a self-signed
// one kept in dir.
func relayCert(certFile, keyFile, dir, host string) (tls.Certificate, error) {
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
		return cert, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("create data dir: %w", err)
	}
	return certs.LoadOrCreate(dir, []string{"localhost", "127.0.0.1", "::1", host})
}

// relayServer is a relay run apart, ready to serve.
type relayServer struct {
	coord     *coordclient.Client
	addrs     relayhost.Addrs
	advertise string
	cert      tls.Certificate
	metrics   string
	limits    relay.Limits
	log       *slog.Logger
}

// metricsReadTimeout bounds reading a metrics request's header.
const metricsReadTimeout = 10 * time.Second

// serveRelay serves the relay until ctx ends.
func serveRelay(ctx context.Context, s relayServer) error {
	keys := s.coord.KeySet()
	if err := keys.Fetch(ctx); err != nil {
		// Tokens fetch the keys again as they come.
		s.log.Warn("cannot fetch the coordinator's keys yet", "err", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reset, err := relayhost.ResetKey(s.cert)
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{
		TLS: &tls.Config{Certificates: []tls.Certificate{s.cert}}, Tokens: keys, Limits: s.limits,
		Registerer: reg, Logger: s.log, StatelessResetKey: reset,
	})
	if err != nil {
		return err
	}
	h, err := relayhost.Listen(s.addrs)
	if err != nil {
		return fmt.Errorf("%w; pick other ports with --listen, --listen-probe and --listen-tcp", err)
	}
	if s.metrics != "" {
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: metricsReadTimeout}
		ln, err := net.Listen("tcp", s.metrics)
		if err != nil {
			h.Close()
			return fmt.Errorf("--metrics: %w", err)
		}
		go srv.Serve(ln)
		defer srv.Close()
	}
	ep := h.Endpoint(s.advertise, certs.ChainFingerprint(s.cert))
	s.log.Info("relay up; give every coordinator this relay endpoint", "relay_endpoint", relayhost.FormatEndpoint(ep), "coordinator", s.coord.Endpoint)
	return h.Serve(ctx, r)
}

// relayLimitFlags adds the flags of a relay's limits, their names behind
// prefix.
func relayLimitFlags(f *pflag.FlagSet, l *relay.Limits, prefix string) {
	f.IntVar(&l.MaxLinks, prefix+"max-peers", 0, "peers connected to the relay at once (default 10000)")
	f.IntVar(&l.MaxSessionsPerPeer, prefix+"max-sessions-per-peer", 0, "sessions one client or exporter is in at once (default 64)")
	f.Int64Var(&l.PeerBandwidth, prefix+"peer-bandwidth", 0, "bytes per second one client or exporter may send through the relay (default unlimited)")
	f.Int64Var(&l.SessionBandwidth, prefix+"session-bandwidth", 0, "bytes per second one session may send through the relay (default unlimited)")
}
