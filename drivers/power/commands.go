package power

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/spf13/cobra"
)

// Commands are the `j` subcommands of a power driver.
func Commands(d *client.Driver) []*cobra.Command {
	j := "j " + strings.ReplaceAll(d.Path, ".", " ")
	c := NewClient(d)
	var delay time.Duration
	cycle := &cobra.Command{
		Use:     "cycle [--delay D]",
		Short:   drivers.MethodDescription(service, "Cycle"),
		Example: fmt.Sprintf("  %s cycle\n  %s cycle --delay 5s", j, j),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if delay < 0 {
				return fmt.Errorf("--delay %v is negative; give how long the power stays off, like 2s", delay)
			}
			return c.Cycle(cmd.Context(), delay)
		},
	}
	cycle.Flags().DurationVar(&delay, "delay", 0, "how long the power stays off (default: the driver's configured delay)")
	return []*cobra.Command{
		{
			Use:     "on",
			Short:   drivers.MethodDescription(service, "On"),
			Example: "  " + j + " on",
			Args:    cobra.NoArgs,
			RunE:    func(cmd *cobra.Command, _ []string) error { return c.On(cmd.Context()) },
		},
		{
			Use:     "off",
			Short:   drivers.MethodDescription(service, "Off"),
			Example: "  " + j + " off",
			Args:    cobra.NoArgs,
			RunE:    func(cmd *cobra.Command, _ []string) error { return c.Off(cmd.Context()) },
		},
		cycle,
		{
			Use:     "status",
			Short:   drivers.MethodDescription(service, "Status"),
			Long:    drivers.MethodDescription(service, "Status") + "\n\nPrints `on` or `off`, when it last changed and how long ago.",
			Example: "  " + j + " status",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				st, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s since %s (%s ago)\n", st, st.Since.Format(time.RFC3339), time.Since(st.Since).Round(time.Second))
				return err
			},
		},
		{
			Use:     "watch",
			Short:   drivers.MethodDescription(service, "Watch"),
			Long:    drivers.MethodDescription(service, "Watch") + "\n\nPrints a line per state, `TIME on|off`, until interrupted.",
			Example: "  " + j + " watch",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				err := c.Watch(cmd.Context(), func(st Status) error { return printState(cmd.OutOrStdout(), st) })
				if cmd.Context().Err() != nil && errors.Is(err, cmd.Context().Err()) {
					return nil // interrupted: the normal way to stop watching
				}
				return err
			},
		},
	}
}

func printState(w io.Writer, st Status) error {
	_, err := fmt.Fprintf(w, "%s %s\n", st.Since.Format(time.RFC3339), st)
	return err
}

// describe is the method's description from the proto, for help text.
