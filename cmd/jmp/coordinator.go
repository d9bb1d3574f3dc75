package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/kubestore"
	"github.com/jumpmesh/jumpmesh/coordinator/relayhost"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/spf13/cobra"
)

// The stores --store picks.
const (
	storeEmbedded   = "embedded"
	storeKubernetes = "kubernetes"
)

func newCoordinatorCmd() *cobra.Command {
	var (
		o             coordinator.RunOptions
		logLevel      slog.Level
		storeName     string
		namespace     string
		builtInRelay  bool
		relayEndpoint string
	)
	cmd := &cobra.Command{
		Use:   "coordinator [--data-dir DIR] [--listen ADDR] [--store embedded|kubernetes [--namespace NS]]",
		Short: "Run the coordinator: exporters register with it, clients lease from it",
		Long: `Run the coordinator. On first start it makes a self-signed TLS certificate
in --data-dir (unless given --tls-cert and --tls-key) and an admin identity.

--store embedded (the default) keeps everything in one file in --data-dir
and writes the admin's client config to DIR/admin.yaml.

--store kubernetes keeps everything in jumpmesh.dev custom resources (install
them first: kubectl apply -k deploy/crds) in --namespace, found the way kubectl
finds its cluster: $KUBECONFIG, ~/.kube/config, or the pod's service account.
Replicas may share the namespace; give them one certificate (--tls-cert). The
admin's client config goes to the Secret jumpmesh-admin, and Clients and
Exporters made with kubectl get their tokens in Secrets.

Clients and exporters meet at a relay, which tells them each other's
addresses for a direct path and forwards their (end-to-end encrypted)
packets when none opens. The coordinator runs one built in, with its own
certificate and keys: QUIC on UDP at --listen's port, a second UDP port and
TLS over TCP on the next port up (--relay-udp, --relay-probe-udp,
--relay-tcp). Replicas sharing a store must hand out one relay: run
'jmp relay' and give each --relay-endpoint with what it prints.`,
		Example: `  jmp coordinator --data-dir /var/lib/jumpmesh
  JMP_CLIENT_CONFIG=/var/lib/jumpmesh/admin.yaml jmp admin create client alice -o alice.yaml

  jmp coordinator --listen :8443 --relay-udp :3478 --relay-probe-udp :3479 --relay-tcp :3478

  jmp coordinator --store kubernetes --namespace jumpmesh \
    --relay-endpoint udp=relay.example.com:4433,probe=relay.example.com:4434,tcp=relay.example.com:4433,fingerprint=sha256:...
  kubectl -n jumpmesh get secret jumpmesh-admin -o jsonpath='{.data.admin\.yaml}' | base64 -d >admin.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: logLevel}))
			if err := relayOptions(cmd, &o.Relay, builtInRelay, relayEndpoint); err != nil {
				return err
			}
			switch storeName {
			case storeEmbedded:
				if cmd.Flags().Changed("namespace") {
					return errors.New("--namespace needs --store kubernetes")
				}
			case storeKubernetes:
				st, err := openKubeStore(cmd.Context(), namespace, o.Logger)
				if err != nil {
					return err
				}
				defer st.Close()
				o.Store = st
				o.OnStart = func(ctx context.Context, c *coordinator.Coordinator, ep *coordinatorv1.Endpoint) {
					st.RunCredentials(ctx, kubestore.CredentialsOptions{Issuer: c, Endpoint: ep.GetUrl(), CAFingerprint: ep.GetCaFingerprint()})
				}
			default:
				return fmt.Errorf("--store %q: pick %s or %s", storeName, storeEmbedded, storeKubernetes)
			}
			return coordinator.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&storeName, "store", storeEmbedded, "where records live: embedded (a file in --data-dir) or kubernetes (custom resources)")
	f.StringVar(&namespace, "namespace", "", "with --store kubernetes: the namespace (default the kubeconfig context's, or the pod's)")
	f.StringVar(&o.DataDir, "data-dir", defaultStateDir("coordinator"), "where the embedded store, self-signed TLS certificate and admin.yaml live")
	f.StringVar(&o.Listen, "listen", ":8443", "address to serve HTTPS on")
	f.StringVar(&o.Advertise, "advertise", "", "URL clients and exporters use (default from --listen and the host name)")
	f.StringVar(&o.TLSCert, "tls-cert", "", "PEM certificate (chain) to serve instead of a self-signed one")
	f.StringVar(&o.TLSKey, "tls-key", "", "PEM key of --tls-cert")
	f.StringSliceVar(&o.TLSHosts, "tls-host", nil, "extra names or addresses for the self-signed certificate")
	f.DurationVar(&o.Config.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "how often exporters send heartbeats; three missed take one offline")
	f.DurationVar(&o.Config.ExporterGrace, "exporter-grace", 2*time.Minute, "how long a lease survives its exporter being offline")
	f.DurationVar(&o.Config.PreemptionNotice, "preemption-notice", 30*time.Second, "how long a preempted spot lease runs on (negative: end at once)")
	f.DurationVar(&o.Config.DefaultDuration, "default-duration", 30*time.Minute, "lease duration when a client gives none")
	f.DurationVar(&o.Config.LeaseHistory, "lease-history", 24*time.Hour, "how long ended leases stay listed")
	f.DurationVar(&o.Config.TokenLifetime, "token-lifetime", 365*24*time.Hour, "lifetime of client, exporter and admin tokens")
	f.BoolVar(&builtInRelay, "relay", true, "run the built-in relay (--relay=false: none, or the one --relay-endpoint names)")
	f.StringVar(&o.Relay.Listen.UDP, "relay-udp", "", "UDP address of the built-in relay's QUIC port (default --listen's, over UDP)")
	f.StringVar(&o.Relay.Listen.ProbeUDP, "relay-probe-udp", "", "UDP address of its second port, which tells NAT types apart (default --listen's port + 1)")
	f.StringVar(&o.Relay.Listen.TCP, "relay-tcp", "", "TCP address of its TLS port, for networks that block UDP (default --listen's port + 1)")
	f.StringVar(&o.Relay.Host, "relay-host", "", "host name or address peers reach the built-in relay at (default --advertise's host)")
	relayLimitFlags(f, &o.Relay.Limits, "relay-")
	f.StringVar(&relayEndpoint, "relay-endpoint", "", "hand out a relay run apart, as 'jmp relay' prints it: udp=HOST:PORT,probe=HOST:PORT,tcp=HOST:PORT,fingerprint=sha256:HEX")
	f.TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	return cmd
}

// relayOptions checks the relay flags and fills o from them.
func relayOptions(cmd *cobra.Command, o *coordinator.RelayOptions, builtIn bool, endpoint string) error {
	f := cmd.Flags()
	if endpoint != "" {
		if f.Changed("relay") && builtIn {
			return errors.New("--relay-endpoint hands out a relay run apart; drop --relay=true")
		}
		ep, err := relayhost.ParseEndpoint(endpoint)
		if err != nil {
			return fmt.Errorf("--relay-endpoint: %w", err)
		}
		o.Endpoint, builtIn = ep, false
	}
	if !builtIn {
		for _, name := range []string{"relay-udp", "relay-probe-udp", "relay-tcp", "relay-host",
			"relay-max-peers", "relay-max-sessions-per-peer", "relay-peer-bandwidth", "relay-session-bandwidth"} {
			if f.Changed(name) {
				return fmt.Errorf("--%s configures the built-in relay, which --relay=false or --relay-endpoint turns off", name)
			}
		}
	}
	o.Off = !builtIn
	return nil
}

// openKubeStore connects to the Kubernetes API server and fills the
// store's mirror of the namespace.
func openKubeStore(ctx context.Context, namespace string, log *slog.Logger) (*kubestore.Store, error) {
	cfg, ns, err := kubestore.LoadConfig(namespace)
	if err != nil {
		return nil, err
	}
	st, err := kubestore.New(ctx, kubestore.Options{Namespace: ns, RESTConfig: cfg, Logger: log})
	if err != nil {
		return nil, err
	}
	log.Info("using the Kubernetes store", "server", cfg.Host, "namespace", ns)
	return st, nil
}

// defaultStateDir is $XDG_STATE_HOME/jumpmesh/NAME, for a coordinator or
// relay run by a person; services pass --data-dir.
func defaultStateDir(name string) string {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "jumpmesh-" + name
		}
		base = home + "/.local/state"
	}
	return base + "/jumpmesh/" + name
}
