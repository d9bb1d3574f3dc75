package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/spf13/cobra"
)

func newCoordinatorCmd() *cobra.Command {
	var (
		o        coordinator.RunOptions
		logLevel slog.Level
	)
	cmd := &cobra.Command{
		Use:   "coordinator [--data-dir DIR] [--listen ADDR]",
		Short: "Run the coordinator: exporters register with it, clients lease from it",
		Long: `Run the coordinator with its embedded store (one file in --data-dir).
On first start it makes a self-signed TLS certificate and an admin identity,
and writes the admin's client config to DIR/admin.yaml.`,
		Example: `  jmp coordinator --data-dir /var/lib/jumpmesh
  JMP_CLIENT_CONFIG=/var/lib/jumpmesh/admin.yaml jmp admin create client alice -o alice.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: logLevel}))
			return coordinator.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", defaultDataDir(), "where the store, TLS certificate and admin.yaml live")
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
