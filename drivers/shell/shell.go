// Package shell is the shell interface: named commands that the exporter
// runs on its host. It binds the jumpmesh.drivers.shell.v1.Shell service to
// the Server that shell drivers implement, and gives clients a typed
// Client and `j` its run and list commands.
package shell

import (
	"context"
	"io"
	"sync"

	"github.com/jumpmesh/jumpmesh/drivers"
	shellv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/shell/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Interface is the full name of the service.
const Interface = "jumpmesh.drivers.shell.v1.Shell"

var service = shellv1.File_jumpmesh_drivers_shell_v1_shell_proto.Services().ByName("Shell")

// Command is a command a driver offers.
type Command struct {
	Name        string
	Description string
	Args        []Arg
}

// Arg is an argument of a command.
type Arg struct {
	Name        string
	Description string
	// Default is the value when the caller gives none.
	Default string
	// Required arguments must be given.
	Required bool
}

// Server runs commands; drivers implement it.
type Server interface {
	List(ctx context.Context) ([]Command, error)
	// Run runs the named command with args, streaming its output to stdout
	// and stderr as it comes, and returns its exit code.
	Run(ctx context.Context, name string, args map[string]string, stdout, stderr io.Writer) (int, error)
}

// Bind serves s as the shell interface.
func Bind(s Server) drivers.Interface {
	return drivers.Interface{
		Service: service,
		Handlers: map[protoreflect.Name]drivers.Handler{
			"List": drivers.Unary(func(ctx context.Context, _ *shellv1.ListRequest) (*shellv1.ListResponse, error) {
				cmds, err := s.List(ctx)
				if err != nil {
					return nil, err
				}
				resp := &shellv1.ListResponse{}
				for _, c := range cmds {
					pc := &shellv1.Command{Name: c.Name, Description: c.Description}
					for _, a := range c.Args {
						pc.Args = append(pc.Args, &shellv1.Argument{Name: a.Name, Description: a.Description, Default: a.Default, Required: a.Required})
					}
					resp.Commands = append(resp.Commands, pc)
				}
				return resp, nil
			}),
			"Run": drivers.ServerStream(func(ctx context.Context, req *shellv1.RunRequest, send func(*shellv1.RunOutput) error) error {
				o := &output{send: send}
				code, err := s.Run(ctx, req.GetCommand(), req.GetArgs(), o.writer(false), o.writer(true))
				if err != nil {
					return err
				}
				return o.sendMsg(&shellv1.RunOutput{Output: &shellv1.RunOutput_ExitCode{ExitCode: int32(code)}})
			}),
		},
	}
}

// output serializes a run's output messages: stdout and stderr come from
// different goroutines.
type output struct {
	mu   sync.Mutex
	send func(*shellv1.RunOutput) error
}

func (o *output) sendMsg(m *shellv1.RunOutput) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.send(m)
}

func (o *output) writer(stderr bool) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		// The message owns its bytes: the caller may reuse p.
		b := append([]byte(nil), p...)
		m := &shellv1.RunOutput{Output: &shellv1.RunOutput_Stdout{Stdout: b}}
		if stderr {
			m.Output = &shellv1.RunOutput_Stderr{Stderr: b}
		}
		if err := o.sendMsg(m); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
