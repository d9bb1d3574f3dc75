package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// meshShell runs `jmp shell` on a leased board through the mesh, with a
// bash script, as env.
func (l *lab) meshShell(env []string, shellArgs []string, sh string) result {
	l.t.Helper()
	args := append(append([]string{"shell"}, shellArgs...), "--", "bash", "-euo", "pipefail", "-c", sh)
	return runIn(l.t, l.net.client, l.dir, env, args...)
}

// lastLine is the last line of a command's stderr: its error.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// leases lists a client's leases, ended ones too.
func (l *lab) leases(env []string) []leaseJSON {
	l.t.Helper()
	var out []leaseJSON
	require.NoError(l.t, json.Unmarshal([]byte(l.jmp(env, "get", "leases", "--all", "-o", "json")), &out))
	return out
}

// TestMeshShell drives a board through the mesh as in local mode, on
// each path: power, the console, flashing. The shell says which path it
// took, and so does j; the lease it made is released on exit, and a lease
// it was given is left as it was.
func TestMeshShell(t *testing.T) {
	l := newLab(t)
	alice := l.client("alice")
	l.exporter("vb-1", "board=virtual")
	image := make([]byte, 200<<10)
	rand.Read(image)
	sum := sha256.Sum256(image)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(image)
	zw.Close()
	require.NoError(t, os.WriteFile(filepath.Join(l.dir, "image.raw.gz"), gz.Bytes(), 0o600))

	tests := []struct {
		path string
		want string // how the shell and j name the path
	}{
		{path: "direct", want: "direct, rtt "},
		{path: "relay", want: "relayed over UDP, rtt "},
		{path: "auto", want: "direct, rtt "},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := l.meshShell(alice, []string{"-l", "board=virtual", "--path", tt.path}, `j
j serial expect --timeout 10s 'virtual login:' -- j power on
j storage flash image.raw.gz
j serial expect --timeout 10s "Image sha256 `+hex.EncodeToString(sum[:])+`" -- j power cycle >/dev/null
echo booted the new image
j power off # for the next lease: the exporter leaves the board as it is`)
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			for _, want := range []string{"vb-1 (board=virtual)", "session: " + tt.want, "virtual login:",
				"wrote 204800 bytes", "booted the new image"} {
				require.Contains(t, r.stdout, want)
			}
			require.Contains(t, r.stderr, "session with vb-1: "+tt.want)
			for _, ls := range l.leases(alice) {
				require.Equal(t, "LEASE_STATE_ENDED", ls.Status.State, "lease %s", ls.Metadata.Name)
				require.Equal(t, "LEASE_REASON_RELEASED", ls.Status.Reason, "lease %s", ls.Metadata.Name)
			}
		})
	}

	t.Run("own lease", func(t *testing.T) {
		name := strings.TrimSpace(l.jmp(alice, "create", "lease", "-l", "board=virtual", "--wait", "-o", "name"))
		r := l.meshShell(alice, []string{"--lease", name, "--path", "direct"}, "j power status")
		require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Equal(t, "LEASE_STATE_READY", l.lease(alice, name).Status.State, "a lease the shell did not make stays")
		l.jmp(alice, "delete", "lease", name)
	})
}

// TestMeshShellLeaseExpires: the lease ends mid-session; the shell says
// so, hangs up on its command and fails.
func TestMeshShellLeaseExpires(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	alice := l.client("alice")
	l.exporter("vb-1", "board=virtual")
	r := l.meshShell(alice, []string{"-l", "board=virtual", "--duration", "3s", "--path", "relay"}, "j power on; j power status; exec sleep 60")
	require.NotEqual(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, "on since", "the session worked until the lease ended")
	require.Regexp(t, `^jmp: lease lease-\w+ ended: expired`, lastLine(r.stderr), "stderr:\n%s", r.stderr)
}

// asyncShell is a `jmp shell` running while the test acts on the lab.
type asyncShell struct {
	cmd            *exec.Cmd
	ctx            context.Context
	stdout, stderr string // files
}

// startShell starts `jmp shell SHELLARGS -- bash -c SH` as env, with its
// output in files in the lab's folder.
func (l *lab) startShell(env, shellArgs []string, sh string) *asyncShell {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(l.t.Context(), commandTimeout)
	l.t.Cleanup(cancel)
	args := append(append([]string{"shell"}, shellArgs...), "--", "bash", "-euo", "pipefail", "-c", sh)
	s := &asyncShell{cmd: jmpCommand(ctx, l.net.client, args...), ctx: ctx,
		stdout: filepath.Join(l.dir, "shell.out"), stderr: filepath.Join(l.dir, "shell.err")}
	s.cmd.Dir, s.cmd.Env = l.dir, append(os.Environ(), env...)
	out, err := os.Create(s.stdout)
	require.NoError(l.t, err)
	defer out.Close()
	errf, err := os.Create(s.stderr)
	require.NoError(l.t, err)
	defer errf.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, errf
	require.NoError(l.t, s.cmd.Start())
	return s
}

func (s *asyncShell) output(t *testing.T) (stdout, stderr string) {
	o, err := os.ReadFile(s.stdout)
	require.NoError(t, err)
	e, err := os.ReadFile(s.stderr)
	require.NoError(t, err)
	return string(o), string(e)
}

// wait waits for the shell to exit and returns its exit code.
func (s *asyncShell) wait(t *testing.T) int {
	err := s.cmd.Wait()
	_, stderr := s.output(t)
	require.NoError(t, s.ctx.Err(), "the shell hung\nstderr:\n%s", stderr)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, err)
	return 0
}

// exists reports whether the file name exists in the lab's folder.
func (l *lab) exists(name string) func() bool {
	return func() bool {
		_, err := os.Stat(filepath.Join(l.dir, name))
		return err == nil
	}
}

// TestMeshShellExporterLost: the exporter dies mid-session and does not
// come back; once its lease is lost, the shell says so and fails.
func TestMeshShellExporterLost(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	alice := l.client("alice")
	exp := l.exporter("vb-1", "board=virtual")
	sh := l.startShell(alice, []string{"-l", "board=virtual", "--path", "direct"}, "j power on; touch ready; exec sleep 60")
	l.waitFor("the session to start", l.exists("ready"))
	exp.kill()
	begin := time.Now()
	require.NotEqual(t, 0, sh.wait(t))
	_, stderr := sh.output(t)
	require.Regexp(t, `^jmp: lease lease-\w+ ended: exporter lost`, lastLine(stderr), "stderr:\n%s", stderr)
	t.Logf("the shell ended %v after the exporter died", time.Since(begin).Round(time.Millisecond))
}

// TestMeshShellExporterRestarts: the exporter crashes mid-session and
// comes back within the lease's grace; the session reconnects by itself
// and the shell's command goes on.
func TestMeshShellExporterRestarts(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	alice := l.client("alice")
	exp := l.exporter("vb-1", "board=virtual")
	sh := l.startShell(alice, []string{"-l", "board=virtual", "--path", "direct"},
		"j power on; touch ready; while [ ! -e go ]; do sleep 0.05; done; j power status; j | tail -1")
	l.waitFor("the session to start", l.exists("ready"))
	exp.restart()
	l.waitFor("the session to reconnect", func() bool {
		_, stderr := sh.output(t)
		return strings.Count(stderr, "session with vb-1: direct") >= 2
	})
	require.NoError(t, os.WriteFile(filepath.Join(l.dir, "go"), nil, 0o600))
	code := sh.wait(t)
	stdout, stderr := sh.output(t)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stderr, "session with vb-1: reconnecting")
	require.Contains(t, stdout, "off since", "the restarted exporter answers (its board starts off)")
	require.Contains(t, stdout, "session: direct")
}
