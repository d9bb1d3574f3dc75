package serial

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/exporter/exportertest"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// echoHubs holds the hub of every test.echo driver built, by exporter.
var echoHubs sync.Map // exporter name -> *Hub

// exporters numbers the tests' exporters, to tell their hubs apart.
var exporters atomic.Int32

// echoDevice is a device that sends back what it is sent.
type echoDevice struct{ hub *Hub }

func (e *echoDevice) Write(p []byte) (int, error) { return e.hub.Write(p) }

type echoDriver struct{ hub *Hub }

func (d echoDriver) Interfaces() []drivers.Interface { return []drivers.Interface{Bind(d.hub)} }
func (d echoDriver) Close() error                    { return d.hub.Close() }

func init() {
	drivers.Register(drivers.Type{Name: "test.echo", Description: "echoes its input", New: func(b *drivers.Build) (drivers.Driver, error) {
		dev := &echoDevice{}
		dev.hub = NewHub(dev)
		echoHubs.Store(b.Exporter, dev.hub)
		return echoDriver{dev.hub}, nil
	}})
}

// echo starts an exporter with one echo console and returns its driver and
// hub.
func echo(t *testing.T) (*client.Driver, *Hub) {
	t.Helper()
	name := fmt.Sprintf("echo-%d", exporters.Add(1))
	s := exportertest.Session(t, "apiVersion: jumpmesh.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: "+name+"}\nexport:\n  serial: {type: test.echo}\n")
	d, err := s.Driver(t.Context(), "serial")
	require.NoError(t, err)
	h, ok := echoHubs.Load(name)
	require.True(t, ok)
	return d, h.(*Hub)
}

func TestClientConsole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, hub := echo(t)
		st, err := NewClient(d).Console(t.Context())
		require.NoError(t, err)
		_, err = io.WriteString(st, "hello")
		require.NoError(t, err)
		got := make([]byte, 5)
		_, err = io.ReadFull(st, got)
		require.NoError(t, err)
		require.Equal(t, "hello", string(got))
		require.NoError(t, st.Wait(nil), "ending the input ends the console cleanly")
		synctest.Wait()
		require.Zero(t, hub.open())
	})
}

func TestClientDisconnectFreesTheConsole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, hub := echo(t)
		c := NewClient(d)
		ctx, cancel := context.WithCancel(t.Context())
		a, err := c.Console(ctx)
		require.NoError(t, err)
		b, err := c.Console(t.Context())
		require.NoError(t, err)
		io.WriteString(a, "typing...")
		synctest.Wait()
		require.Equal(t, 2, hub.open())

		cancel() // the client vanishes mid-stream, without ending its input
		synctest.Wait()
		require.Equal(t, 1, hub.open(), "its console slot is freed")
		a.Close()

		b.Close()
		synctest.Wait()
		require.Zero(t, hub.open())
		// synctest.Test fails if a goroutine of either console is left.
	})
}

// syncBuffer is written by a command while the test reads it.
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

// execute runs `j serial ARGS...` with stdin in.
func execute(ctx context.Context, d *client.Driver, in io.Reader, stdout, stderr io.Writer, args ...string) error {
	root := &cobra.Command{Use: "j", SilenceUsage: true, SilenceErrors: true}
	sc := &cobra.Command{Use: "serial"}
	sc.AddCommand(Commands(d)...)
	root.AddCommand(sc)
	root.SetArgs(append([]string{"serial"}, args...))
	root.SetIn(in)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantOut    string
		wantErrOut string
		wantErr    string
	}{
		{name: "pipe", args: []string{"pipe"}, stdin: "uname -a\n", wantOut: "uname -a\n"},
		{name: "pipe, empty input", args: []string{"pipe"}, wantOut: ""},
		{name: "console, input ends", args: []string{"console"}, stdin: "ls\n", wantOut: "ls\n", wantErrOut: "Connected to the console; press Ctrl-] to leave.\n"},
		{name: "console, escape", args: []string{"console"}, stdin: "\x1dnot sent", wantErrOut: "Connected to the console; press Ctrl-] to leave.\n\nLeft the console.\n"},
		{name: "expect sends first", args: []string{"expect", "--send", "login as root", `log\w+ as`}, wantOut: "login as root\n"},
		{name: "expect times out", args: []string{"expect", "--timeout", "5s", "--send", "boot", "login:"}, wantOut: "boot\n", wantErr: `timed out after 5s waiting for "login:"; last line seen: "boot"`},
		{name: "expect bad pattern", args: []string{"expect", "(unclosed"}, wantErr: `PATTERN "(unclosed" is not a Go regular expression`},
		{name: "expect no pattern", args: []string{"expect"}, wantErr: "want one PATTERN, then optionally -- CMD ARGS"},
		{name: "expect two patterns", args: []string{"expect", "a", "b"}, wantErr: "want one PATTERN, then optionally -- CMD ARGS"},
		{name: "expect bad timeout", args: []string{"expect", "--timeout", "0s", "x"}, wantErr: "--timeout 0s is not positive"},
		{name: "console takes no args", args: []string{"console", "now"}, wantErr: `unknown command "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d, hub := echo(t)
				var stdout, stderr syncBuffer
				err := execute(t.Context(), d, strings.NewReader(tt.stdin), &stdout, &stderr, tt.args...)
				if tt.wantErr != "" {
					require.ErrorContains(t, err, tt.wantErr)
				} else {
					require.NoError(t, err)
				}
				require.Equal(t, tt.wantOut, stdout.String())
				require.Equal(t, tt.wantErrOut, stderr.String())
				synctest.Wait()
				require.Zero(t, hub.open(), "the command's console is closed")
			})
		})
	}
}

func TestPipeFollow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, hub := echo(t)
		ctx, cancel := context.WithCancel(t.Context())
		var stdout syncBuffer
		done := make(chan error, 1)
		go func() { done <- execute(ctx, d, strings.NewReader("first\n"), &stdout, io.Discard, "pipe", "--follow") }()
		synctest.Wait()
		require.Equal(t, 1, hub.open(), "stdin ended, the console stays open")
		hub.Write([]byte("later output\n"))
		synctest.Wait()
		require.Equal(t, "first\nlater output\n", stdout.String())
		cancel()
		require.NoError(t, <-done, "interrupting is the normal end")
		synctest.Wait()
		require.Zero(t, hub.open())

		// The device going away ends it too.
		go func() {
			done <- execute(t.Context(), d, strings.NewReader(""), io.Discard, io.Discard, "pipe", "--follow")
		}()
		synctest.Wait()
		hub.Close()
		require.ErrorContains(t, <-done, "the serial device was closed")
	})
}

// onWrite calls fn once, at the first write that contains s.
type onWrite struct {
	syncBuffer
	s    string
	fn   func()
	once sync.Once
}

func (w *onWrite) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.s)) {
		w.once.Do(w.fn)
	}
	return w.syncBuffer.Write(p)
}

func TestExpectRunsCommandAfterOpening(t *testing.T) {
	d, hub := echo(t)
	tests := []struct {
		name    string
		cmd     []string
		wantErr string
	}{
		{name: "match after the command", cmd: []string{"sh", "-c", "echo running"}},
		{name: "command fails", cmd: []string{"sh", "-c", "exit 4"}, wantErr: "sh -c exit 4 failed: exit status 4"},
		{name: "command missing", cmd: []string{"/no/such/command"}, wantErr: "run /no/such/command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout syncBuffer
			// The command's output goes to stderr. The board prints its
			// prompt only once the command ran: the console, opened before,
			// must see it.
			stderr := &onWrite{s: "running", fn: func() { hub.Write([]byte("login: ")) }}
			args := append([]string{"expect", "--timeout", "30s", "login:", "--"}, tt.cmd...)
			err := execute(t.Context(), d, strings.NewReader(""), &stdout, stderr, args...)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "running\n", stderr.String())
			require.Equal(t, "login: ", stdout.String())
		})
	}
}
