package script

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/jumpmesh/jumpmesh/proto/wire"
	"golang.org/x/sys/unix"
)

// pipeGrace is how long, after its process group was killed, a run waits
// for the last output of a process that escaped the group (setsid) and
// still holds the pipes, before closing them.
const pipeGrace = time.Second

var errTimeout = errors.New("command timed out")

// process is one run of a command.
type process struct {
	name, shell, script, dir string
	env                      []string
	timeout                  time.Duration
}

// run runs p in its own process group and streams its output. When the
// shell exits, when p's timeout passes or when ctx ends, the whole group
// is killed, so that no process of the run outlives it.
func run(ctx context.Context, p process, stdout, stderr io.Writer) (int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, p.timeout, errTimeout)
	defer cancel()
	cmd := exec.Command(p.shell, "-c", p.script)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", p.name, err)
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return 0, fmt.Errorf("run %s: %w", p.name, err)
	}
	defer errR.Close()
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return 0, wire.Errorf(wire.FailedPrecondition, "start command %s: %v", p.name, err)
	}
	pid := cmd.Process.Pid

	var copying sync.WaitGroup
	for _, c := range []struct {
		r *os.File
		w io.Writer
	}{{outR, stdout}, {errR, stderr}} {
		copying.Go(func() {
			if _, err := io.Copy(c.w, c.r); err != nil {
				cancel() // the output has nowhere to go: stop the run
			}
		})
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		waitExited(pid)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
	}
	// The exited shell is not reaped yet, so its pid, which names the
	// group, cannot have been reused: the kill reaches only the run.
	syscall.Kill(-pid, syscall.SIGKILL)
	<-exited
	waitErr := cmd.Wait()

	copied := make(chan struct{})
	go func() { copying.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(pipeGrace):
		outR.Close()
		errR.Close()
		<-copied
	}

	switch {
	case errors.Is(context.Cause(ctx), errTimeout):
		return 0, wire.Errorf(wire.DeadlineExceeded, "command %s timed out after %v and its processes were killed; raise its timeout in the exporter config if it needs longer", p.name, p.timeout)
	case ctx.Err() != nil:
		return 0, ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil // as shells report it
		}
		return ee.ExitCode(), nil
	}
	if waitErr != nil {
		return 0, fmt.Errorf("wait for command %s: %w", p.name, waitErr)
	}
	return 0, nil
}

// waitExited waits until the process has exited without reaping it.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}
