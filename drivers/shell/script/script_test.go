package script

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/shell"
	shellv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/shell/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
)

func build(t *testing.T, dir, configYAML string) (*Driver, error) {
	t.Helper()
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(configYAML), &doc))
	typ, ok := drivers.Lookup("shell")
	require.True(t, ok, "the shell type registers itself")
	d, err := typ.New(&drivers.Build{
		Name: "scripts", Path: "scripts", Exporter: "test",
		File: "bench.yaml", Dir: dir, Log: slog.New(slog.DiscardHandler),
		Config: doc.Content[0], Shared: &drivers.Shared{},
	})
	if err != nil {
		return nil, err
	}
	return d.(*Driver), nil
}

const commands = `
commands:
  hello:
    description: Greet someone
    run: echo hello {{.name}}
    args:
      name: {description: who to greet, default: world}
  greet:
    run: echo {{.greeting}}, {{.name}}
    args:
      greeting: {required: true, description: what to say}
      name: {default: you}
  fail:
    run: echo oops >&2; exit 3
  where:
    run: pwd; echo $COLOR
    env: {COLOR: blue}
    dir: sub
`

func newDriver(t *testing.T) (*Driver, string) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	d, err := build(t, dir, commands)
	require.NoError(t, err)
	return d, dir
}

// syncBuffer collects output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRun(t *testing.T) {
	d, dir := newDriver(t)
	tests := []struct {
		name       string
		command    string
		args       map[string]string
		wantOut    string
		wantErrOut string
		wantCode   int
	}{
		{name: "default argument", command: "hello", wantOut: "hello world\n"},
		{name: "given argument", command: "hello", args: map[string]string{"name": "Ada Lovelace"}, wantOut: "hello Ada Lovelace\n"},
		{name: "required and default", command: "greet", args: map[string]string{"greeting": "hi"}, wantOut: "hi, you\n"},
		{name: "exit code and stderr", command: "fail", wantErrOut: "oops\n", wantCode: 3},
		{name: "dir and env", command: "where", wantOut: filepath.Join(dir, "sub") + "\nblue\n"},
		{name: "empty value", command: "hello", args: map[string]string{"name": ""}, wantOut: "hello \n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut syncBuffer
			code, err := d.Run(t.Context(), tt.command, tt.args, &out, &errOut)
			require.NoError(t, err)
			require.Equal(t, tt.wantCode, code)
			require.Equal(t, tt.wantOut, out.String())
			require.Equal(t, tt.wantErrOut, errOut.String())
		})
	}
}

func TestRunRejects(t *testing.T) {
	d, _ := newDriver(t)
	tests := []struct {
		name    string
		command string
		args    map[string]string
		code    wire.Code
		want    string
	}{
		{"unknown command", "bye", nil, wire.NotFound, `no command "bye"; the commands are: fail, greet, hello, where`},
		{"unknown argument", "hello", map[string]string{"nmae": "x"}, wire.InvalidArgument, `command hello has no argument "nmae"; its arguments: name (default "world")`},
		{"arguments to a command without", "fail", map[string]string{"x": "1"}, wire.InvalidArgument, "command fail takes no arguments, got x"},
		{"missing required argument", "greet", nil, wire.InvalidArgument, "command greet needs argument greeting (what to say): add greeting=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Run(t.Context(), tt.command, tt.args, &syncBuffer{}, &syncBuffer{})
			require.Equal(t, tt.code, wire.CodeOf(err))
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestArgumentsCannotInject(t *testing.T) {
	d, dir := newDriver(t)
	attacks := []string{
		"x; touch pwned1",
		"$(touch pwned2)",
		"`touch pwned3`",
		"'; touch pwned4; echo '",
		"x' && touch pwned5 && echo 'y",
		"\"; touch pwned6; \"",
		"x\ntouch pwned7",
		"${IFS}touch${IFS}pwned8",
		"-n",
		"*",
	}
	for _, a := range attacks {
		t.Run(a, func(t *testing.T) {
			var out syncBuffer
			code, err := d.Run(t.Context(), "hello", map[string]string{"name": a}, &out, &syncBuffer{})
			require.NoError(t, err)
			require.Zero(t, code)
			require.Equal(t, "hello "+a+"\n", out.String(), "the value arrives as one literal word")
			pwned, _ := filepath.Glob(filepath.Join(dir, "pwned*"))
			require.Empty(t, pwned)
		})
	}
}

// alive says whether pid is a process that can still run: gone, zombie
// and exiting ones (the kernel is only tearing them down) cannot.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Fields after the command, which is in parentheses: the state first,
	// the exit code (proc(5): field 52) last.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	state, exitCode := fields[0], fields[len(fields)-1]
	return state != "Z" && state != "X" && exitCode == "0"
}

// pids reads the pids a script wrote, one a line.
func pids(t *testing.T, file string) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var out []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		require.NoError(t, err)
		out = append(out, pid)
	}
	require.NotEmpty(t, out)
	return out
}

func TestNoProcessOutlivesItsRun(t *testing.T) {
	// Each script starts background processes (a subshell and a sleep in
	// it) and notes their pids; all must be gone when Run returns.
	const spawn = `(sleep 300 & echo $! >> pids; wait) & echo $! >> pids; sleep 300 & echo $! >> pids; `
	tests := []struct {
		name    string
		run     string
		timeout string
		cancel  bool // the client goes away
		wantErr error
		code    wire.Code
	}{
		{name: "timeout", run: spawn + "echo started; wait", timeout: "300ms", code: wire.DeadlineExceeded},
		{name: "client goes away", run: spawn + "echo started; wait", cancel: true, wantErr: context.Canceled},
		{name: "shell exits, children linger", run: spawn + "echo started"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := "commands:\n  spawn:\n    run: " + strconv.Quote(tt.run)
			if tt.timeout != "" {
				cfg += "\n    timeout: " + tt.timeout
			}
			d, err := build(t, dir, cfg)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			out := &notifyWriter{started: make(chan struct{})}
			go func() {
				<-out.started
				if tt.cancel {
					cancel()
				}
			}()
			_, err = d.Run(ctx, "spawn", nil, out, &syncBuffer{})
			switch {
			case tt.code != 0:
				require.Equal(t, tt.code, wire.CodeOf(err))
				require.ErrorContains(t, err, "command spawn timed out after 300ms and its processes were killed")
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
			default:
				require.NoError(t, err)
			}
			for _, pid := range pids(t, filepath.Join(dir, "pids")) {
				require.False(t, alive(pid), "process %d of the run is still alive", pid)
			}
		})
	}
}

// notifyWriter closes started at the first output: the run is under way.
type notifyWriter struct {
	once    sync.Once
	started chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	return len(p), nil
}

func TestOutputStreamsAsItComes(t *testing.T) {
	d, err := build(t, t.TempDir(), "commands:\n  slow:\n    run: echo first; sleep 300; echo never")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	out := &notifyWriter{started: make(chan struct{})}
	go func() {
		<-out.started // seen while the command still runs
		cancel()
	}()
	_, err = d.Run(ctx, "slow", nil, out, &syncBuffer{})
	require.ErrorIs(t, err, context.Canceled)
}

// failingWriter fails every write, as a stream to a client that has gone.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("stream closed") }

func TestOutputWithNowhereToGoStopsTheRun(t *testing.T) {
	d, err := build(t, t.TempDir(), "commands:\n  chatty:\n    run: while true; do echo spam; done")
	require.NoError(t, err)
	_, err = d.Run(t.Context(), "chatty", nil, failingWriter{}, &syncBuffer{})
	require.ErrorIs(t, err, context.Canceled)
}

func TestList(t *testing.T) {
	d, _ := newDriver(t)
	cmds, err := d.List(t.Context())
	require.NoError(t, err)
	require.Equal(t, []shell.Command{
		{Name: "fail"},
		{Name: "greet", Args: []shell.Arg{{Name: "greeting", Description: "what to say", Required: true}, {Name: "name", Default: "you"}}},
		{Name: "hello", Description: "Greet someone", Args: []shell.Arg{{Name: "name", Description: "who to greet", Default: "world"}}},
		{Name: "where"},
	}, cmds)
}

func TestBindStreamsRun(t *testing.T) {
	d, _ := newDriver(t)
	iface := d.Interfaces()[0]
	require.NoError(t, iface.Validate())
	h, _, _ := iface.Method("Run")
	var msgs []*shellv1.RunOutput
	var mu sync.Mutex
	err := h.CallStream(t.Context(), &shellv1.RunRequest{Command: "fail"}, func(m proto.Message) error {
		mu.Lock()
		defer mu.Unlock()
		msgs = append(msgs, m.(*shellv1.RunOutput))
		return nil
	})
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	require.Equal(t, []byte("oops\n"), msgs[0].GetStderr())
	require.Equal(t, int32(3), msgs[1].GetExitCode(), "the exit code comes last")
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"no commands", "shell: /bin/sh", "bench.yaml:1: export.scripts.config.commands: required key is missing"},
		{"empty commands", "commands: {}", "commands is empty"},
		{"no run", "commands:\n  a: {description: x}", "bench.yaml:2: export.scripts.config.commands.a.run: required key is missing"},
		{"unknown key", "commands:\n  a:\n    run: x\n    timout: 1s", "bench.yaml:4: export.scripts.config.commands.a.timout: unknown key; valid keys: args, description, dir, env, run, timeout"},
		{"bad timeout", "commands:\n  a:\n    run: x\n    timeout: forever", `bench.yaml:4: export.scripts.config.commands.a.timeout: "forever" is not a duration`},
		{"bad template", "commands:\n  a: {run: 'echo {{.name'}", "commands.a.run: not a valid template"},
		{"undeclared argument", "commands:\n  a: {run: 'echo {{.name}}'}", `commands.a.run: template: a:1:7: executing "a" at <.name>: map has no entry for key "name"; declare every {{.name}} it uses under args`},
		{"required with default", "commands:\n  a: {run: x, args: {n: {required: true, default: y}}}", "commands.a.args.n: is required and has a default; drop one"},
		{"bad argument name", "commands:\n  a: {run: x, args: {my-arg: {}}}", `bench.yaml:2: export.scripts.config.commands.a.args.my-arg: use letters, digits and '_' in argument names`},
		{"bad command name", "commands:\n  'a b': {run: x}", `bench.yaml:2: export.scripts.config.commands.a b: use letters, digits`},
		{"missing shell", "shell: /no/such/sh\ncommands: {a: {run: x}}", "shell /no/such/sh cannot be run"},
		{"missing dir", "commands: {a: {run: x, dir: nowhere}}", "commands.a.dir: " + "DIR/nowhere is not a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := build(t, dir, tt.yaml)
			require.ErrorContains(t, err, strings.ReplaceAll(tt.want, "DIR", dir))
		})
	}
}
