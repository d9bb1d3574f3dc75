package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// Every lab's namespaces are named jmk<pid>-<random>-<role>: the pid lets
// Sweep tell a killed run's leftovers from a live parallel run's namespaces,
// and the random part keeps two labs of one process apart.
var labNameRE = regexp.MustCompile(`^jmk([0-9]+)-[0-9a-f]{6}-`)

func newLabID() string {
	return fmt.Sprintf("jmk%d-%06x", os.Getpid(), rand.N(1<<24))
}

// Node is one network namespace of a lab: a host or a router.
type Node struct {
	ns string
}

// Namespace is the name `ip netns` knows the node by.
func (n Node) Namespace() string { return n.ns }

// Command prepares a command that runs inside the node's namespace (through
// `ip netns exec`, which also shows the namespace's own /sys). Pass a context
// that ends with the test (t.Context()) so a daemon dies with it; Close also
// kills whatever is still running in the namespace.
func (n Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.ns, name}, args...)...)
}

// Do runs fn on an OS thread that has entered the node's namespace, and
// returns fn's error. Sockets belong to the namespace they were created in for
// their whole life, so a socket fn opens (net.ListenUDP, net.Dial, a
// quic.Transport's conn) can then be used from any goroutine, and processes
// fn starts run in the namespace too. Goroutines fn starts do not run in the
// namespace: open sockets in fn itself, and dial IP addresses, not names (a
// resolver may use other threads).
//
// This is cheaper and simpler than re-executing the test binary inside the
// namespace: the code under test runs in the test's process, under its race
// detector and its assertions, with nothing to serialize.
func (n Node) Do(fn func() error) error {
	f, err := os.Open(filepath.Join(netnsDir, n.ns))
	if err != nil {
		return fmt.Errorf("enter namespace %s: %w", n.ns, err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() {
		// The thread stays locked: when this goroutine ends, the runtime
		// discards the thread instead of returning it, with its changed
		// namespace, to the pool.
		runtime.LockOSThread()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("enter namespace %s: %w", n.ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// run runs a command in the root namespace, feeding it stdin, and folds its
// output into the error.
func run(ctx context.Context, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// runIn is run inside namespace ns.
func runIn(ctx context.Context, ns, stdin string, name string, args ...string) error {
	return run(ctx, stdin, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Sweep removes the namespaces of labs whose process is gone (a test killed
// before its cleanup ran). Build calls it; labs of live processes are left
// alone, so parallel test binaries do not disturb each other.
func Sweep(ctx context.Context) error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep stale lab namespaces: %w", err)
	}
	var stale []string
	for _, e := range entries {
		m := labNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || processAlive(pid) {
			continue
		}
		stale = append(stale, e.Name())
	}
	if err := deleteNamespaces(ctx, stale); err != nil {
		return fmt.Errorf("sweep stale lab namespaces: %w", err)
	}
	return nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// deleteNamespaces kills every process left in the namespaces (a namespace
// lives on while a process is in it) and removes those that exist.
func deleteNamespaces(ctx context.Context, names []string) error {
	var existing []string
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(netnsDir, n)); err == nil {
			existing = append(existing, n)
		}
	}
	if len(existing) == 0 {
		return nil
	}
	killErr := killProcessesIn(existing)
	var batch strings.Builder
	for _, n := range existing {
		fmt.Fprintf(&batch, "netns delete %s\n", n)
	}
	// -force: go on past a namespace that fails, to remove the rest.
	delErr := run(ctx, batch.String(), "ip", "-force", "-batch", "-")
	return errors.Join(killErr, delErr)
}

// nsID identifies a namespace as the kernel does: the nsfs inode.
type nsID struct{ dev, ino uint64 }

func namespaceOf(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{dev: st.Dev, ino: st.Ino}, nil
}

// killProcessesIn sends SIGKILL to every process whose network namespace is
// one of names, except this one.
func killProcessesIn(names []string) error {
	targets := map[nsID]bool{}
	for _, n := range names {
		if id, err := namespaceOf(filepath.Join(netnsDir, n)); err == nil {
			targets[id] = true
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	var errs []error
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		id, err := namespaceOf(filepath.Join("/proc", p.Name(), "ns", "net"))
		if err != nil || !targets[id] {
			continue // gone meanwhile, or elsewhere
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill process %d left in a lab namespace: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}
