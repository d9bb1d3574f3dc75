package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/exporter"
	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var configFile string
	var logLevel slog.Level
	cmd := &cobra.Command{
		Use:   "run --exporter-config FILE",
		Short: "Run an exporter: register with the coordinator and serve leases",
		Long: `Run an exporter daemon. It builds the driver tree of its ExporterConfig,
registers it with the coordinator, keeps its status stream (reconnecting with
backoff when the coordinator goes away) and learns which lease it serves.
Make the config with 'jmp admin create exporter NAME --export-from FILE -o FILE'.`,
		Example: "  jmp run --exporter-config bench-01.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				return errors.New("give --exporter-config FILE")
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
			// The mesh key lives as long as the process: every start
			// registers a new one.
			pub, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return fmt.Errorf("generate mesh key: %w", err)
			}
			agent := &coordclient.Agent{Client: c, Report: e.Report(), PublicKey: pub, Logger: log}
			log.Info("exporter starting", "name", cfg.Metadata.Name, "coordinator", cfg.Endpoint)
			return agent.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&configFile, "exporter-config", "", "the exporter's ExporterConfig `FILE` (from 'jmp admin create exporter')")
	cmd.Flags().TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	return cmd
}
