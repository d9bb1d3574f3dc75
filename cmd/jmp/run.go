package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/exporter"
	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var configFile, keyFile string
	var meshPort uint16
	var publicAddrs []string
	var logLevel slog.Level
	cmd := &cobra.Command{
		Use:   "run --exporter-config FILE",
		Short: "Run an exporter: register with the coordinator and serve leases",
		Long: `Run an exporter daemon. It builds the driver tree of its ExporterConfig,
registers it with the coordinator, keeps its status stream (reconnecting with
backoff when the coordinator goes away) and learns which lease it serves.
When the lease's client connects (jmp shell), the coordinator hands the
exporter a session token; the exporter joins the session at the relay and
serves the client over the mesh, directly or relayed.

Its mesh key, which the coordinator pins, is kept in --mesh-key (made on
first start, readable by its owner only).

Clients reach the exporter directly when punching through the NATs between
them works, and through the relay otherwise. An exporter behind a NAT that
maps by destination (symmetric), with a port forward to it, can offer that:
fix its UDP port with --mesh-port and name the forward with --public-addr.
Make the config with 'jmp admin create exporter NAME --export-from FILE -o FILE'.`,
		Example: "  jmp run --exporter-config bench-01.yaml\n" +
			"  jmp run --exporter-config bench-01.yaml --mesh-port 4500 --public-addr 203.0.113.7:4500",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				return errors.New("give --exporter-config FILE")
			}
			public, err := parsePublicAddrs(publicAddrs)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: logLevel}))
			cfg, err := exporter.Load(configFile)
			if err != nil {
				return err
			}
			if cfg.Endpoint == "" || cfg.Token == "" {
				return fmt.Errorf("%s has no endpoint or token: make it with `jmp admin create exporter %s --export-from %s -o FILE`",
					configFile, cfg.Metadata.Name, configFile)
			}
			if keyFile == "" {
				keyFile = meshKeyPath(configFile)
			}
			key, made, err := loadMeshKey(keyFile)
			if err != nil {
				return err
			}
			if made {
				log.Info("made a new mesh key", "path", keyFile)
			}
			c, err := coordclient.New(coordclient.Conn{
				Endpoint: cfg.Endpoint,
				TLS:      coordclient.TLSConfig{CAFingerprint: cfg.TLS.CAFingerprint, CAFile: cfg.TLS.CAFile},
				Token:    cfg.Token,
				Source:   configFile,
			})
			if err != nil {
				return err
			}
			defer c.Close()
			e, err := exporter.New(cfg, log)
			if err != nil {
				return err
			}
			defer e.Close()
			m := newMeshExporter(e, key, c.KeySet(), log)
			m.port, m.public = meshPort, public
			agent := &coordclient.Agent{Client: c, Report: e.Report(), PublicKey: key.Public().(ed25519.PublicKey), Logger: log, OnSession: m.offer}
			m.agent = agent
			log.Info("exporter starting", "name", cfg.Metadata.Name, "coordinator", cfg.Endpoint)
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			var wg sync.WaitGroup
			wg.Go(func() { m.run(ctx) })
			err = agent.Run(ctx)
			stop()
			wg.Wait()
			return err
		},
	}
	cmd.Flags().StringVar(&configFile, "exporter-config", "", "the exporter's ExporterConfig `FILE` (from 'jmp admin create exporter')")
	cmd.Flags().StringVar(&keyFile, "mesh-key", "", "the exporter's mesh key `FILE`, made if missing (default: beside the config, NAME.key)")
	cmd.Flags().Uint16Var(&meshPort, "mesh-port", 0, "UDP `PORT` of the mesh socket (default any free one)")
	cmd.Flags().StringArrayVar(&publicAddrs, "public-addr", nil, "an `IP:PORT` clients reach the mesh socket at from anywhere, such as a port forward to --mesh-port; repeatable")
	cmd.Flags().TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	return cmd
}

// parsePublicAddrs reads --public-addr values.
func parsePublicAddrs(values []string) ([]netip.AddrPort, error) {
	out := make([]netip.AddrPort, 0, len(values))
	for _, v := range values {
		a, err := netip.ParseAddrPort(v)
		if err != nil || a.Port() == 0 {
			return nil, fmt.Errorf("--public-addr %q: give an IP address and a port, like 203.0.113.7:4500", v)
		}
		out = append(out, a)
	}
	return out, nil
}
