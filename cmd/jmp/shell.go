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
	"sync"
	"syscall"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/exporter"
	"github.com/spf13/cobra"

	_ "github.com/jumpmesh/jumpmesh/drivers/all" // every driver type
)

// childStopGrace is how long the shell's command gets to exit after jmp
// passes SIGTERM on, or hangs up on it because the session ended, before
// it is killed: long enough for a script's traps.
const childStopGrace = 10 * time.Second

// Session folder entries and the variables that name them.
const (
	// sessionDirEnv names the session's folder, for j.
	sessionDirEnv = "JMP_SESSION_DIR"
	// socketName is j's socket to the exporter.
	socketName = "exporter.sock"
	// statusSocketName answers, with one line, how the session goes.
	statusSocketName = "status.sock"
)

func newShellCmd() *cobra.Command {
	var (
		configFile string
		logLevel   slog.Level
		remote     remoteShell
		cf         clientFlags
	)
	cmd := &cobra.Command{
		Use:   "shell (--exporter-config FILE | -l SELECTOR | --lease NAME) [-- COMMAND [ARGS...]]",
		Short: "Open a shell, or run a command, with a device to drive with j",
		Long: `jmp shell starts a session with a device and runs your $SHELL (or COMMAND)
inside it, with 'j' on PATH and JMP_HOST set, so that 'j power on' and friends
drive the device. COMMAND's exit code becomes jmp's.

With --exporter-config, the exporter runs inside jmp itself: no coordinator,
no network. On exit, or on SIGINT or SIGTERM, the drivers are closed (power is
left as each power driver's onExit says) and the session's socket is removed.

With -l SELECTOR, jmp leases a matching device from the coordinator (waiting
for it, as long as it takes), connects to its exporter through the mesh, and
releases the lease on exit. With --lease NAME it uses a lease you hold and
leaves it be. The connection goes directly to the exporter when the network
allows, else through the relay; jmp says which, and its round-trip time, when
it connects and when that changes, and so does 'j' with no arguments.
--path forces one, for debugging and benchmarks. When the lease ends or the
exporter goes, jmp says why and hangs up on COMMAND (SIGHUP), and exits
non-zero.`,
		Example: `  # An interactive shell on the virtual board:
  jmp shell --exporter-config examples/virtual-board.yaml

  # A script:
  jmp shell --exporter-config examples/virtual-board.yaml -- sh -c 'j power on && j serial expect login:'

  # A leased board, through the coordinator, for an hour:
  jmp shell -l board=rpi4 --duration 1h
  jmp shell --lease lease-k3x9q2ab --path relay -- j power cycle`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			modes := 0
			for _, name := range []string{"exporter-config", "selector", "lease"} {
				if f.Changed(name) {
					modes++
				}
			}
			if modes != 1 {
				return errors.New("say which device to use, one way: --exporter-config FILE (local, see examples/virtual-board.yaml), -l SELECTOR (a new lease) or --lease NAME (one you hold)")
			}
			if configFile != "" {
				for _, name := range []string{"duration", "path", "client-config"} {
					if f.Changed(name) {
						return fmt.Errorf("--%s is for a leased device; --exporter-config runs the exporter inside jmp", name)
					}
				}
				return runLocalShell(cmd.Context(), configFile, logLevel, args)
			}
			if remote.lease != "" && f.Changed("duration") {
				return errors.New("--duration is for a new lease (-l); change the length of lease " + remote.lease + " with `jmp update lease`")
			}
			remote.logLevel = logLevel
			return remote.run(cmd.Context(), &cf, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "exporter-config", "", "run the exporter of this ExporterConfig inside jmp (local mode)")
	f.StringVarP(&remote.selector, "selector", "l", "", "lease a device matching this label selector, e.g. board=rpi4, and release it on exit")
	f.StringVar(&remote.lease, "lease", "", "use this lease of yours (it is left as it is on exit)")
	f.DurationVar(&remote.duration, "duration", 0, "with -l: how long the lease lasts (default: the coordinator's, 30m)")
	f.StringVar(&remote.path, "path", "auto", "with -l or --lease: the mesh path, auto, direct or relay (for debugging and benchmarks)")
	f.TextVar(&logLevel, "log-level", slog.LevelWarn, "log level of the exporter (local) or the mesh (leased) on stderr: debug, info, warn or error")
	cf.register(cmd)
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
	s := shellSession{serve: e.ServeListener, env: []string{"JMP_EXPORTER=" + cfg.Metadata.Name}}
	return s.run(ctx, args)
}

// shellSession is what a jmp shell gives its command: j's socket in a
// private folder, served the same way whether the exporter runs in jmp or
// across the mesh.
type shellSession struct {
	// serve serves j's socket until ctx ends.
	serve func(ctx context.Context, l net.Listener) error
	// env is for the command, besides JMP_HOST, JMP_SESSION_DIR and PATH.
	env []string
	// status, if set, says how the session goes, in a line for j.
	status func() string
	// ended, if set, yields why the session ended under the command, which
	// is then hung up on.
	ended <-chan error
}

// run makes the session's folder, serves it, and runs args (or $SHELL) in
// it until the command exits.
func (s shellSession) run(ctx context.Context, args []string) error {
	// A private folder (0700) holds the sockets and the j link, so no other
	// user can drive the device.
	dir, err := os.MkdirTemp("", "jmp-")
	if err != nil {
		return fmt.Errorf("make session folder: %w", err)
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, socketName)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", socket, err)
	}
	binDir := filepath.Join(dir, "bin")
	if err := linkJ(binDir); err != nil {
		l.Close()
		return err
	}

	// The session outlives signals until the command has exited, so that
	// the command can still use it while it handles them.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopServing()
		wg.Wait()
	}()
	wg.Go(func() { s.serve(serveCtx, l) })
	if s.status != nil {
		sl, err := net.Listen("unix", filepath.Join(dir, statusSocketName))
		if err != nil {
			return fmt.Errorf("listen on the session's status socket: %w", err)
		}
		wg.Go(func() { serveStatus(serveCtx, sl, s.status) })
	}

	path := binDir + string(os.PathListSeparator) + os.Getenv("PATH")
	env := append(os.Environ(), s.env...)
	env = append(env,
		client.HostEnv+"=unix://"+socket,
		sessionDirEnv+"="+dir,
		"PATH="+path,
	)
	return runChild(args, env, path, s.ended)
}

// serveStatus answers each connection to l with status() and a newline,
// until ctx ends.
func serveStatus(ctx context.Context, l net.Listener, status func() string) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(status() + "\n"))
		c.Close()
	}
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
// to it; an interactive shell ignores SIGINT, as it should. When stop
// yields a reason, the command is hung up on (SIGHUP) and the reason is
// returned once it has exited.
func runChild(args, env []string, path string, stop <-chan error) error {
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
	var (
		kill    <-chan time.Time
		stopped error
	)
	for {
		select {
		case sig := <-signals:
			child.Process.Signal(sig)
			if sig == syscall.SIGTERM && kill == nil {
				kill = time.After(childStopGrace)
			}
		case stopped = <-stop:
			stop = nil
			child.Process.Signal(syscall.SIGHUP)
			if kill == nil {
				kill = time.After(childStopGrace)
			}
		case <-kill:
			child.Process.Kill()
		case err := <-exited:
			if stopped != nil {
				return stopped
			}
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
