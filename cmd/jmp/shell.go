package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/exporter"
	"github.com/spf13/cobra"

	_ "github.com/jumpmesh/jumpmesh/drivers/all" // every driver type
)

// childStopGrace is how long the shell's command gets to exit after jmp
// passes SIGTERM on, before it is killed: long enough for a script's traps.
const childStopGrace = 10 * time.Second

func newShellCmd() *cobra.Command {
	var (
		configFile string
		logLevel   slog.Level
	)
	cmd := &cobra.Command{
		Use:   "shell --exporter-config FILE [-- COMMAND [ARGS...]]",
		Short: "Open a shell, or run a command, with a device to drive with j",
		Long: `jmp shell starts a session with a device and runs your $SHELL (or COMMAND)
inside it, with 'j' on PATH and JMP_HOST set, so that 'j power on' and friends
drive the device. COMMAND's exit code becomes jmp's.

With --exporter-config, the exporter runs inside jmp itself: no coordinator,
no network. On exit, or on SIGINT or SIGTERM, the drivers are closed (power is
left as each power driver's onExit says) and the session's socket is removed.`,
		Example: `  # An interactive shell on the virtual board:
  jmp shell --exporter-config examples/virtual-board.yaml

  # A script:
  jmp shell --exporter-config examples/virtual-board.yaml -- sh -c 'j power on && j serial expect login:'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configFile == "" {
				return errors.New("say which device to use: --exporter-config FILE (see examples/virtual-board.yaml)")
			}
			return runLocalShell(cmd.Context(), configFile, logLevel, args)
		},
	}
	cmd.Flags().StringVar(&configFile, "exporter-config", "", "run the exporter of this ExporterConfig inside jmp (local mode)")
	cmd.Flags().TextVar(&logLevel, "log-level", slog.LevelWarn, "exporter log level shown on stderr: debug, info, warn or error")
	return cmd
}

func runLocalShell(ctx context.Context, configFile string, logLevel slog.Level, args []string) error {
	cfg, err := exporter.Load(configFile)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	e, err := exporter.New(cfg, log)
	if err != nil {
		return err
	}
	defer e.Close()

	// A private folder (0700) holds the socket and the j link, so no other
	// user can drive the device.
	dir, err := os.MkdirTemp("", "jmp-")
	if err != nil {
		return fmt.Errorf("make session folder: %w", err)
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "exporter.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", socket, err)
	}
	binDir := filepath.Join(dir, "bin")
	if err := linkJ(binDir); err != nil {
		return err
	}

	// The exporter outlives signals until the command has exited, so that
	// the command can still use it while it handles them.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- e.ServeListener(serveCtx, l) }()
	defer func() {
		stopServing()
		<-served
	}()

	path := binDir + string(os.PathListSeparator) + os.Getenv("PATH")
	env := append(os.Environ(),
		client.HostEnv+"=unix://"+socket,
		"JMP_EXPORTER="+cfg.Metadata.Name,
		"PATH="+path,
	)
	return runChild(args, env, path)
}

// linkJ puts a `j` on PATH that is this very binary.
func linkJ(binDir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find jmp's own binary: %w", err)
	}
	if err := os.Mkdir(binDir, 0o700); err != nil {
		return fmt.Errorf("make session bin folder: %w", err)
	}
	if err := os.Symlink(self, filepath.Join(binDir, "j")); err != nil {
		return fmt.Errorf("link j: %w", err)
	}
	return nil
}

// runChild runs args (or $SHELL), found in path, with env and returns its
// exit status as an *exitError. SIGINT and SIGTERM sent to jmp are passed on
// to it; an interactive shell ignores SIGINT, as it should.
func runChild(args, env []string, path string) error {
	if len(args) == 0 {
		shell := os.Getenv("SHELL")
		if shell == "" {
			shell = "/bin/sh"
		}
		args = []string{shell}
	}
	bin, err := lookPath(args[0], path)
	if err != nil {
		return err
	}
	child := exec.Command(bin, args[1:]...)
	child.Args[0] = args[0]
	child.Env = env
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	if err := child.Start(); err != nil {
		return fmt.Errorf("run %s: %w", args[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	var kill <-chan time.Time
	for {
		select {
		case sig := <-signals:
			child.Process.Signal(sig)
			if sig == syscall.SIGTERM && kill == nil {
				kill = time.After(childStopGrace)
			}
		case <-kill:
			child.Process.Kill()
		case err := <-exited:
			return exitStatus(args[0], err)
		}
	}
}

// lookPath finds name as the child's PATH would, which holds j.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("run %s: not found in PATH", name)
}

func exitStatus(name string, err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &exitError{code: 128 + int(ws.Signal())}
		}
		return &exitError{code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", name, err)
	}
	return nil
}
