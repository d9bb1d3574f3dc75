package shell

import (
	"context"
	"fmt"
	"io"

	"github.com/jumpmesh/jumpmesh/client"
	shellv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/shell/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
)

// Client drives a shell driver.
type Client struct{ d *client.Driver }

// NewClient returns a client of d, which must implement Interface.
func NewClient(d *client.Driver) *Client { return &Client{d: d} }

// List returns the commands the driver offers.
func (c *Client) List(ctx context.Context) ([]Command, error) {
	var resp shellv1.ListResponse
	if err := c.d.Call(ctx, Interface, "List", &shellv1.ListRequest{}, &resp); err != nil {
		return nil, err
	}
	var cmds []Command
	for _, pc := range resp.GetCommands() {
		cmd := Command{Name: pc.GetName(), Description: pc.GetDescription()}
		for _, a := range pc.GetArgs() {
			cmd.Args = append(cmd.Args, Arg{Name: a.GetName(), Description: a.GetDescription(), Default: a.GetDefault(), Required: a.GetRequired()})
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// Run runs the named command, copying its output to stdout and stderr as
// it comes, and returns its exit code.
func (c *Client) Run(ctx context.Context, name string, args map[string]string, stdout, stderr io.Writer) (int, error) {
	code, ended := 0, false
	err := client.Stream(ctx, c.d, Interface, "Run", &shellv1.RunRequest{Command: name, Args: args}, func(o *shellv1.RunOutput) error {
		var err error
		switch out := o.GetOutput().(type) {
		case *shellv1.RunOutput_Stdout:
			_, err = stdout.Write(out.Stdout)
		case *shellv1.RunOutput_Stderr:
			_, err = stderr.Write(out.Stderr)
		case *shellv1.RunOutput_ExitCode:
			code, ended = int(out.ExitCode), true
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if !ended {
		return 0, fmt.Errorf("%s run %s: %w", c.d.Path, name, wire.Errorf(wire.Internal, "the exporter ended the run without an exit code"))
	}
	return code, nil
}
