package power_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/config"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	_ "github.com/jumpmesh/jumpmesh/drivers/virtual"
	"github.com/jumpmesh/jumpmesh/exporter/exportertest"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const board = `apiVersion: jumpmesh.dev/v1alpha1
kind: ExporterConfig
metadata: {name: test}
export:
  power: {type: virtual.power, config: {cycleDelay: 3s}}
`

func TestBindValidates(t *testing.T) {
	require.NoError(t, power.Bind(&recorder{}).Validate())
}

func powerDriver(t *testing.T) *client.Driver {
	t.Helper()
	d, err := exportertest.Session(t, board).Driver(t.Context(), "power")
	require.NoError(t, err)
	return d
}

func TestClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := power.NewClient(powerDriver(t))
		ctx := t.Context()
		st, err := c.Status(ctx)
		require.NoError(t, err)
		require.False(t, st.On)

		require.NoError(t, c.On(ctx))
		st, err = c.Status(ctx)
		require.NoError(t, err)
		require.True(t, st.On)
		require.True(t, time.Now().Equal(st.Since), "since is when it changed (virtual time stands still)")

		start := time.Now()
		require.NoError(t, c.Cycle(ctx, 0))
		require.Equal(t, 3*time.Second, time.Since(start), "no delay given: the configured cycleDelay")
		start = time.Now()
		require.NoError(t, c.Cycle(ctx, 500*time.Millisecond))
		require.Equal(t, 500*time.Millisecond, time.Since(start))

		require.NoError(t, c.Off(ctx))
		st, err = c.Status(ctx)
		require.NoError(t, err)
		require.False(t, st.On)
	})
}

// syncBuffer is a bytes.Buffer that a command writes while the test reads.
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

// execute runs `j power ARGS...` and returns its output.
func execute(ctx context.Context, d *client.Driver, out *syncBuffer, args ...string) error {
	root := &cobra.Command{Use: "j", SilenceUsage: true, SilenceErrors: true}
	pc := &cobra.Command{Use: "power"}
	pc.AddCommand(power.Commands(d)...)
	root.AddCommand(pc)
	root.SetArgs(append([]string{"power"}, args...))
	root.SetOut(out)
	root.SetErr(out)
	return root.ExecuteContext(ctx)
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string // output must contain it
		wantErr string
	}{
		{name: "on then status", args: []string{"on"}, want: ""},
		{name: "status", args: []string{"status"}, want: "off since "},
		{name: "cycle with delay", args: []string{"cycle", "--delay", "2s"}, want: ""},
		{name: "negative delay", args: []string{"cycle", "--delay", "-2s"}, wantErr: "--delay -2s is negative"},
		{name: "bad delay", args: []string{"cycle", "--delay", "soon"}, wantErr: `invalid argument "soon"`},
		{name: "extra args", args: []string{"on", "now"}, wantErr: `unknown command "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var out syncBuffer
				err := execute(t.Context(), powerDriver(t), &out, tt.args...)
				if tt.wantErr != "" {
					require.ErrorContains(t, err, tt.wantErr)
					return
				}
				require.NoError(t, err)
				require.Contains(t, out.String(), tt.want)
			})
		})
	}
}

func TestStatusCommandAfterOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := powerDriver(t)
		var out syncBuffer
		require.NoError(t, execute(t.Context(), d, &out, "on"))
		time.Sleep(90 * time.Second)
		require.NoError(t, execute(t.Context(), d, &out, "status"))
		require.Regexp(t, `^on since \S+ \(1m30s ago\)\n$`, out.String())
	})
}

func TestWatchCommand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := powerDriver(t)
		c := power.NewClient(d)
		ctx, cancel := context.WithCancel(t.Context())
		var out syncBuffer
		done := make(chan error, 1)
		go func() { done <- execute(ctx, d, &out, "watch") }()
		synctest.Wait()
		require.NoError(t, c.On(t.Context()))
		require.NoError(t, c.Cycle(t.Context(), time.Second))
		synctest.Wait()
		cancel()
		require.NoError(t, <-done, "interrupting watch is its normal end")
		var states []string
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			states = append(states, strings.Fields(l)[1])
		}
		require.Equal(t, []string{"off", "on", "off", "on"}, states)
	})
}

func TestCycleRejectsBadDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := power.NewClient(powerDriver(t))
		err := c.Cycle(t.Context(), -time.Second)
		require.ErrorIs(t, err, &wire.Error{Code: wire.InvalidArgument})
		require.ErrorContains(t, err, "not a positive duration")
	})
}

func TestConfig(t *testing.T) {
	tests := []struct {
		yaml    string
		want    power.Config
		wantErr string
	}{
		{yaml: "{}", want: power.Config{}},
		{yaml: "onExit: off", want: power.Config{OnExit: power.ExitOff}},
		{yaml: "onExit: keep\ncycleDelay: 2s", want: power.Config{OnExit: power.ExitKeep, CycleDelay: 2e9}},
		{yaml: "\nonExit: maybe", wantErr: `bench.yaml:2: export.power.config.onExit: "maybe" is not one of off, on, keep`},
		{yaml: "cycleDelay: soon", wantErr: `bench.yaml:1: export.power.config.cycleDelay: "soon" is not a duration; write it like 500ms, 2s or 1m30s`},
		{yaml: "onexit: on", wantErr: `bench.yaml:1: export.power.config.onexit: unknown key; valid keys: cycleDelay, onExit`},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			var n yaml.Node
			require.NoError(t, yaml.Unmarshal([]byte(tt.yaml), &n))
			var got power.Config
			err := config.Decode("bench.yaml", "export.power.config", &n, &got)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// recorder is a power.Server that records what it was asked.
type recorder struct{ calls []string }

func (r *recorder) On(context.Context) error  { r.calls = append(r.calls, "on"); return nil }
func (r *recorder) Off(context.Context) error { r.calls = append(r.calls, "off"); return nil }
func (r *recorder) Cycle(context.Context, time.Duration) error {
	r.calls = append(r.calls, "cycle")
	return nil
}
func (r *recorder) Status(context.Context) (power.Status, error) { return power.Status{}, nil }
func (r *recorder) Watch(context.Context, func(power.Status) error) error {
	return nil
}

func TestExit(t *testing.T) {
	tests := []struct {
		onExit power.OnExit
		want   []string
	}{
		{"", []string{"off"}},
		{power.ExitOff, []string{"off"}},
		{power.ExitOn, []string{"on"}},
		{power.ExitKeep, nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.onExit), func(t *testing.T) {
			r := &recorder{}
			require.NoError(t, power.Config{OnExit: tt.onExit}.Exit(r))
			require.Equal(t, tt.want, r.calls)
		})
	}
}

func TestDelay(t *testing.T) {
	tests := []struct {
		configured, requested, want time.Duration
	}{
		{0, 0, time.Minute},
		{2 * time.Second, 0, 2 * time.Second},
		{2 * time.Second, 5 * time.Second, 5 * time.Second},
	}
	for _, tt := range tests {
		c := power.Config{CycleDelay: drivers.Duration(tt.configured)}
		require.Equal(t, tt.want, c.Delay(tt.requested, time.Minute))
	}
}
