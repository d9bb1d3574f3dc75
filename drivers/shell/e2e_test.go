package shell_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers/shell"
	_ "github.com/jumpmesh/jumpmesh/drivers/shell/script"
	"github.com/jumpmesh/jumpmesh/exporter/exportertest"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

const scripts = `apiVersion: jumpmesh.dev/v1alpha1
kind: ExporterConfig
metadata: {name: test}
export:
  scripts:
    type: shell
    config:
      commands:
        hello:
          description: Greet someone
          run: echo hello {{.name}}
          args:
            name: {description: who to greet, default: world}
        fail: {run: "echo failing >&2; exit 3"}
        flash:
          description: Flash the bootloader
          run: echo flashing {{.image}} at {{.speed}}
          args:
            image: {description: the image file, required: true}
            speed: {default: "115200"}
`

func scriptsDriver(t *testing.T) *client.Driver {
	t.Helper()
	d, err := exportertest.Session(t, scripts).Driver(t.Context(), "scripts")
	require.NoError(t, err)
	return d
}

func TestBindValidates(t *testing.T) {
	require.NoError(t, shell.Bind(nil).Validate())
}

func execute(ctx context.Context, d *client.Driver, stdout, stderr io.Writer, args ...string) error {
	root := &cobra.Command{Use: "j", SilenceUsage: true, SilenceErrors: true}
	sc := &cobra.Command{Use: "scripts"}
	sc.AddCommand(shell.Commands(d)...)
	root.AddCommand(sc)
	root.SetArgs(append([]string{"scripts"}, args...))
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

func TestCommands(t *testing.T) {
	d := scriptsDriver(t)
	tests := []struct {
		name       string
		args       []string
		wantOut    string
		wantErrOut string
		wantErr    string
		wantCode   int // with wantErr: the exit code j must end with
	}{
		{name: "run with default", args: []string{"run", "hello"}, wantOut: "hello world\n"},
		{name: "run with argument", args: []string{"run", "hello", "name=Grace Hopper"}, wantOut: "hello Grace Hopper\n"},
		{name: "value with =", args: []string{"run", "hello", "name=a=b"}, wantOut: "hello a=b\n"},
		{name: "exit code", args: []string{"run", "fail"}, wantErrOut: "failing\n", wantErr: "fail exited with code 3", wantCode: 3},
		{name: "list", args: []string{"list"}, wantOut: `fail
flash          Flash the bootloader
  image=VALUE  the image file (required)
  speed=VALUE  (default "115200")
hello          Greet someone
  name=VALUE   who to greet (default "world")
`},
		{name: "unknown command", args: []string{"run", "bye"}, wantErr: `no command "bye"; the commands are: fail, flash, hello`},
		{name: "missing argument", args: []string{"run", "flash"}, wantErr: "command flash needs argument image (the image file): add image=VALUE"},
		{name: "unknown argument", args: []string{"run", "flash", "imgae=x"}, wantErr: `command flash has no argument "imgae"; its arguments: image (required), speed (default "115200")`},
		{name: "not ARG=VALUE", args: []string{"run", "hello", "world"}, wantErr: `argument "world" is not ARG=VALUE`},
		{name: "argument twice", args: []string{"run", "hello", "name=a", "name=b"}, wantErr: "argument name given twice"},
		{name: "no name", args: []string{"run"}, wantErr: "requires at least 1 arg(s), only received 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := execute(t.Context(), d, &stdout, &stderr, tt.args...)
			require.Equal(t, tt.wantOut, stdout.String())
			require.Equal(t, tt.wantErrOut, stderr.String())
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			var ec interface{ ExitCode() int }
			if tt.wantCode != 0 {
				require.True(t, errors.As(err, &ec), "j exits with the command's code")
				require.Equal(t, tt.wantCode, ec.ExitCode())
			} else {
				require.False(t, errors.As(err, &ec))
			}
		})
	}
}

func TestClient(t *testing.T) {
	c := shell.NewClient(scriptsDriver(t))
	var out bytes.Buffer
	code, err := c.Run(t.Context(), "hello", map[string]string{"name": "$(id)"}, &out, io.Discard)
	require.NoError(t, err)
	require.Zero(t, code)
	require.Equal(t, "hello $(id)\n", out.String(), "values are never shell code")

	_, err = c.Run(t.Context(), "flash", nil, io.Discard, io.Discard)
	require.Equal(t, wire.InvalidArgument, wire.CodeOf(err))

	cmds, err := c.List(t.Context())
	require.NoError(t, err)
	require.Len(t, cmds, 3)
	require.Equal(t, shell.Command{Name: "hello", Description: "Greet someone", Args: []shell.Arg{{Name: "name", Description: "who to greet", Default: "world"}}}, cmds[2])
}
