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
		o         coordinator.RunOptions
		logLevel  slog.Level
		storeName string
		namespace string
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
Exporters made with kubectl get their tokens in Secrets.`,
		Example: `  jmp coordinator --data-dir /var/lib/jumpmesh
  JMP_CLIENT_CONFIG=/var/lib/jumpmesh/admin.yaml jmp admin create client alice -o alice.yaml

  jmp coordinator --store kubernetes --namespace jumpmesh
  kubectl -n jumpmesh get secret jumpmesh-admin -o jsonpath='{.data.admin\.yaml}' | base64 -d >admin.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: logLevel}))
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
	f.StringVar(&o.DataDir, "data-dir", defaultDataDir(), "where the embedded store, self-signed TLS certificate and admin.yaml live")
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
	f.TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	return cmd
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

// defaultDataDir is $XDG_STATE_HOME/jumpmesh/coordinator, for a coordinator
// run by a person; services pass --data-dir.
func defaultDataDir() string {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "jumpmesh-coordinator"
		}
		base = home + "/.local/state"
	}
	return base + "/jumpmesh/coordinator"
}
