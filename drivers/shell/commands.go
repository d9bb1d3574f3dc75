package shell

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/spf13/cobra"
)

// ExitError passes on a command's non-zero exit code; `j` exits with it.
type ExitError struct {
	Command string
	Code    int
}

func (e *ExitError) Error() string { return fmt.Sprintf("%s exited with code %d", e.Command, e.Code) }

// ExitCode is the code to exit with.
func (e *ExitError) ExitCode() int { return e.Code }

// Commands are the `j` subcommands of a shell driver.
func Commands(d *client.Driver) []*cobra.Command {
	j := "j " + strings.ReplaceAll(d.Path, ".", " ")
	c := NewClient(d)
	return []*cobra.Command{
		{
			Use:   "run NAME [ARG=VALUE...]",
			Short: drivers.MethodDescription(service, "Run"),
			Long: drivers.MethodDescription(service, "Run") + `

Arguments are given as ARG=VALUE; ` + "`" + j + ` list` + "`" + ` shows each command's. j exits with
the command's exit code.`,
			Example: fmt.Sprintf("  %s run hello name=world\n  %s list", j, j),
			Args:    cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				name, values := args[0], map[string]string{}
				for _, a := range args[1:] {
					k, v, ok := strings.Cut(a, "=")
					if !ok || k == "" {
						return fmt.Errorf("argument %q is not ARG=VALUE", a)
					}
					if _, dup := values[k]; dup {
						return fmt.Errorf("argument %s given twice", k)
					}
					values[k] = v
				}
				code, err := c.Run(cmd.Context(), name, values, cmd.OutOrStdout(), cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				if code != 0 {
					return &ExitError{Command: name, Code: code}
				}
				return nil
			},
		},
		{
			Use:     "list",
			Short:   drivers.MethodDescription(service, "List"),
			Example: "  " + j + " list",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				cmds, err := c.List(cmd.Context())
				if err != nil {
					return err
				}
				return printCommands(cmd.OutOrStdout(), cmds)
			},
		},
	}
}

func printCommands(w io.Writer, cmds []Command) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, c := range cmds {
		fmt.Fprintf(tw, "%s\t%s\n", c.Name, c.Description)
		for _, a := range c.Args {
			about := []string{}
			if a.Description != "" {
				about = append(about, a.Description)
			}
			if a.Required {
				about = append(about, "(required)")
			} else if a.Default != "" {
				about = append(about, fmt.Sprintf("(default %q)", a.Default))
			}
			fmt.Fprintf(tw, "  %s=VALUE\t%s\n", a.Name, strings.Join(about, " "))
		}
	}
	tw.Flush()
	var out strings.Builder
	for line := range strings.Lines(b.String()) {
		out.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// describe is the method's description from the proto, for help text.
