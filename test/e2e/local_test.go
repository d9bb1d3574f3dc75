package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// commandTimeout bounds one jmp invocation; every step of these scripts
// takes well under a second, so hitting it means a hang.
const commandTimeout = 60 * time.Second

// boardConfig is examples/virtual-board.yaml plus commands to test exit
// codes and bad input with.
const boardConfig = `apiVersion: jumpmesh.dev/v1alpha1
kind: ExporterConfig
metadata:
  name: bench-01
  labels: {board: virtual}
export:
  power: {type: virtual.power, config: {cycleDelay: 50ms}}
  serial: {type: virtual.serial}
  storage: {type: virtual.storage, config: {path: ./disk.img, size: 1Mi}}
  scripts:
    type: shell
    config:
      commands:
        hello: {run: "echo hello {{.name}}", args: {name: {default: world}}}
        fail: {run: "echo failing >&2; exit 3"}
`

type result struct {
	stdout, stderr string
	code           int
}

// run runs jmp with args in dir and returns what it printed and its exit
// code. env adds variables.
func run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	return runIn(t, "", dir, env, args...)
}

// runIn is run inside the network namespace ns ("": the test's own).
func runIn(t *testing.T, ns, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := jmpCommand(ctx, ns, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "jmp %s hung\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), &stdout, &stderr)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// jmpCommand prepares jmp with args, inside the network namespace ns
// ("": the test's own). `ip netns exec` execs jmp, so the process is jmp.
func jmpCommand(ctx context.Context, ns string, args ...string) *exec.Cmd {
	if ns == "" {
		return exec.CommandContext(ctx, jmp, args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, jmp}, args...)...)
}

// board writes the board config to a fresh folder and returns it.
func board(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "board.yaml"), []byte(boardConfig), 0o600))
	return dir
}

// script runs a shell script inside `jmp shell` on the virtual board.
func script(t *testing.T, dir, sh string) result {
	t.Helper()
	return run(t, dir, nil, "shell", "--exporter-config", "board.yaml", "--", "bash", "-euo", "pipefail", "-c", sh)
}

func TestLocalCommands(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   []string // in stdout, in order
	}{
		{"tree", "j", []string{
			"bench-01 (board=virtual)",
			"├── power    virtual.power    ", "cycle, off, on, status, watch",
			"├── serial   virtual.serial   ", "console, expect, pipe",
			"├── storage  virtual.storage  ", "flash, info",
			"└── scripts  shell            ", "list, run",
		}},
		{"power", "j power status; j power on; j power status; j power cycle --delay 10ms; j power status; j power off; j power status",
			[]string{"off", "on since", "on since", "off since"}},
		{"power watch", `mkfifo w; j power watch > w & exec 3<w
read -r a <&3; j power on; read -r b <&3; j power off; read -r c <&3; kill %1
echo "watched: $a | $b | $c"`, []string{"watched: ", " off | ", " on | ", " off\n"}},
		{"boot log", "j serial expect --timeout 10s 'login:' -- j power on",
			[]string{"jumpmesh virtual board", "No image was ever flashed", "virtual login:"}},
		{"console command", "j serial expect 'login:' -- j power on >/dev/null; j serial expect --send 'uname -a' 'GNU/Linux'",
			[]string{"uname -a", "Linux virtual 6.6.0-jumpmesh"}},
		{"serial pipe", `j serial expect 'login:' -- j power on >/dev/null
coproc P { j serial pipe --follow; }
echo 'cat /etc/version' >&"${P[1]}"
while read -r line <&"${P[0]}"; do case $line in *image*) echo "got: $line"; break;; esac; done
kill "$P_PID"`, []string{"got: "}},
		{"console quiet when off", `j serial expect 'login:' -- j power on >/dev/null; j power off
if j serial expect --timeout 200ms --send uname Linux >/dev/null 2>err; then echo "answered while off"; exit 1; fi
cat err`, []string{`timed out after 200ms waiting for "Linux"`}},
		{"scripts", "j scripts list; j scripts run hello; j scripts run hello name='a b; rm -rf /'",
			[]string{"fail", "hello", `name=VALUE  (default "world")`, "hello world", "hello a b; rm -rf /"}},
		{"storage info", "j storage info", []string{"size: 1MiB", "last write: none recorded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := script(t, board(t), tt.script)
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			rest := r.stdout
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				require.GreaterOrEqual(t, i, 0, "want %q in what is left of stdout:\n%s\nfull stdout:\n%s\nstderr:\n%s", w, rest, r.stdout, r.stderr)
				rest = rest[i+len(w):]
			}
		})
	}
}

// TestFlashAndBoot is the main job: flash images in each compression,
// cycle power, and see each one named in the boot log.
func TestFlashAndBoot(t *testing.T) {
	dir := board(t)
	image := make([]byte, 300<<10)
	rand.Read(image)
	sum := sha256.Sum256(image)
	hexSum := hex.EncodeToString(sum[:])
	require.NoError(t, os.WriteFile(filepath.Join(dir, "image.raw"), image, 0o600))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(image)
	zw.Close()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "image.raw.gz"), gz.Bytes(), 0o600))
	for _, tool := range []string{"xz", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Logf("%s is not installed: its image is not tested", tool)
			continue
		}
		out, err := exec.Command(tool, "-k", "-q", filepath.Join(dir, "image.raw")).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	r := script(t, dir, `j serial expect 'login:' -- j power on >/dev/null
for f in image.raw*; do
  j storage flash "$f"
  j serial expect --timeout 10s "Image sha256 `+hexSum+`, 307200 bytes" -- j power cycle >/dev/null
  echo "booted $f"
done
j storage info`)
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, "wrote 307200 bytes")
	require.Contains(t, r.stdout, "booted image.raw\n")
	require.Contains(t, r.stdout, "booted image.raw.gz\n")
	require.Contains(t, r.stdout, "last write: 307200 bytes, sha256 "+hexSum)

	// A wrong checksum or a corrupt file fails and leaves the last image.
	corrupt := append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, bytes.Repeat([]byte{0x42}, 4096)...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.xz"), corrupt, 0o600))
	for _, tt := range []struct{ args, want string }{
		{"image.raw.gz --sha256 " + strings.Repeat("0", 64), "sha256"},
		{"bad.xz", "xz"},
		{"missing.img", "missing.img"},
	} {
		r := script(t, dir, "j storage flash "+tt.args)
		require.NotEqual(t, 0, r.code)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		require.Contains(t, lines[len(lines)-1], tt.want, "the error is the last line of stderr:\n%s", r.stderr)
		require.NotContains(t, r.stderr, "goroutine ")
	}
	r = script(t, dir, "j storage info")
	require.Contains(t, r.stdout, "sha256 "+hexSum, "a failed flash must leave the last image")
}

func TestLocalBadInput(t *testing.T) {
	dir := board(t)
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	head := "apiVersion: jumpmesh.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: x}\n"
	write("syntax.yaml", head+"export:\n  power: {type: virtual.power\n")
	write("unknown-type.yaml", head+"export:\n  power: {type: virtual.powr}\n")
	write("bad-key.yaml", head+"export:\n  power: {type: virtual.power, config: {cycledelay: 1s}}\n")
	write("bad-port.yaml", head+"export:\n  console: {type: serial, config: {port: /dev/ttyNOPE0}}\n")
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"missing config", nil, []string{"shell", "--exporter-config", "nope.yaml", "--", "true"}, 1, "exporter config nope.yaml does not exist"},
		{"no config flag", nil, []string{"shell", "--", "true"}, 1, "--exporter-config"},
		{"syntax error", nil, []string{"shell", "--exporter-config", "syntax.yaml", "--", "true"}, 1, "syntax.yaml:4: YAML syntax: did not find expected ',' or '}'"},
		{"unknown driver type", nil, []string{"shell", "--exporter-config", "unknown-type.yaml", "--", "true"}, 1, `unknown-type.yaml:5: export.power.type: unknown driver type "virtual.powr"; known types:`},
		{"bad config key", nil, []string{"shell", "--exporter-config", "bad-key.yaml", "--", "true"}, 1, "bad-key.yaml:5: export.power.config.cycledelay: unknown key; valid keys: board, cycleDelay, onExit"},
		{"serial port missing", nil, []string{"shell", "--exporter-config", "bad-port.yaml", "--", "true"}, 1, "/dev/ttyNOPE0"},
		{"exit code passes through", nil, []string{"shell", "--exporter-config", "board.yaml", "--", "sh", "-c", "exit 7"}, 7, ""},
		{"command not found", nil, []string{"shell", "--exporter-config", "board.yaml", "--", "no-such-command"}, 1, "no-such-command: not found in PATH"},
		{"unknown driver", nil, []string{"shell", "--exporter-config", "board.yaml", "--", "j", "nope"}, 1, `unknown command "nope" for "j"`},
		{"unknown method", nil, []string{"shell", "--exporter-config", "board.yaml", "--", "j", "power", "explode"}, 1, `unknown command "explode" for "j power"`},
		{"unknown script", nil, []string{"shell", "--exporter-config", "board.yaml", "--", "j", "scripts", "run", "nope"}, 1, `nope`},
		{"script exit code", nil, []string{"shell", "--exporter-config", "board.yaml", "--", "j", "scripts", "run", "fail"}, 3, "failing"},
		{"j outside a shell", []string{"JMP_HOST="}, []string{"power", "on"}, 1, "JMP_HOST is not set: run this inside `jmp shell`"},
		{"j with a dead socket", []string{"JMP_HOST=unix:///tmp/nope.sock"}, []string{"power", "on"}, 1, "exporter socket /tmp/nope.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			var r result
			if tt.env != nil {
				r = runJ(t, dir, tt.env, args...)
			} else {
				r = run(t, dir, nil, args...)
			}
			require.Equal(t, tt.code, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			require.Contains(t, r.stderr, tt.want)
			require.NotContains(t, r.stderr, "goroutine ", "no stack traces")
			if tt.code == 1 {
				require.Equal(t, 1, strings.Count(strings.TrimSpace(r.stderr), "\n")+1, "one line of error, got:\n%s", r.stderr)
			}
		})
	}
}

// runJ runs the binary under the name j, as the link in a shell would.
func runJ(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(jmp), "j"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	require.True(t, err == nil || errors.As(err, &ee), "run j: %v", err)
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// TestShellSignal checks that SIGTERM ends the session: the command gets
// it, jmp exits with its status, and the socket folder is gone.
func TestShellSignal(t *testing.T) {
	dir := board(t)
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, jmp, "shell", "--exporter-config", "board.yaml", "--",
		"sh", "-c", `echo "$JMP_HOST" > host; j power on; echo ready > ready.tmp; mv ready.tmp ready; exec sleep 600`)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, "ready"))
		return err == nil
	}, commandTimeout, 10*time.Millisecond)
	host, err := os.ReadFile(filepath.Join(dir, "host"))
	require.NoError(t, err)
	socket := strings.TrimPrefix(strings.TrimSpace(string(host)), "unix://")
	require.FileExists(t, socket)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	err = cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "stderr: %s", &stderr)
	require.Equal(t, 128+int(syscall.SIGTERM), ee.ExitCode())
	require.NoDirExists(t, filepath.Dir(socket), "the session folder must be removed")
}
