package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/client/coordclient"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// clientFlags pick the client config of commands that call the
// coordinator.
type clientFlags struct{ config string }

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.config, "client-config", "",
		"client config `FILE` (default $"+coordclient.EnvClientConfig+", else the current one, see 'jmp config client use')")
}

func (f *clientFlags) dial() (*coordclient.Client, error) {
	cfg, err := coordclient.ResolveClientConfig(f.config)
	if err != nil {
		return nil, err
	}
	return coordclient.New(coordclient.FromClientConfig(cfg))
}

// unwrap takes the message out of a call's response; the caller explains
// the error with Client.Explain.
func unwrap[T any](resp *connect.Response[T], err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func newCreateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Create a resource (a lease)"}
	var cf clientFlags
	cf.register(cmd)
	cmd.AddCommand(newCreateLeaseCmd(&cf))
	return cmd
}

// waitForever is --wait without a timeout.
const waitForever = "forever"

func newCreateLeaseCmd(cf *clientFlags) *cobra.Command {
	var (
		selector, exporter, begin, end, name, wait string
		duration                                   time.Duration
		tags                                       map[string]string
		out                                        output
	)
	cmd := &cobra.Command{
		Use:   "lease (-l SELECTOR | --exporter NAME) [--duration 30m] [--wait [TIMEOUT]]",
		Short: "Lease an exporter, optionally waiting until it is yours",
		Example: `  jmp create lease -l board=rpi4 --duration 1h --wait
  jmp create lease -l 'board=rpi4,env!=prod,region in (eu,us)' --wait=10m -o name
  jmp create lease --exporter bench-01 --begin +1h --tag ci=nightly`,
		Args: func(cmd *cobra.Command, args []string) error {
			// `--wait 5m` reads as --wait and an argument: take it as the
			// timeout.
			if len(args) == 1 && wait == waitForever && cmd.Flags().Changed("wait") {
				if _, err := time.ParseDuration(args[0]); err == nil {
					wait = args[0]
					return nil
				}
			}
			return cobra.NoArgs(cmd, args)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			req := &coordinatorv1.CreateLeaseRequest{Selector: selector, Exporter: exporter, Tags: tags, Name: name}
			if cmd.Flags().Changed("duration") {
				req.Duration = durationpb.New(duration)
			}
			now := time.Now()
			for _, t := range []struct {
				flag, value string
				dst         **timestamppb.Timestamp
			}{{"--begin", begin, &req.BeginTime}, {"--end", end, &req.EndTime}} {
				if t.value == "" {
					continue
				}
				at, err := parseTime(t.value, now)
				if err != nil {
					return fmt.Errorf("%s: %w", t.flag, err)
				}
				*t.dst = timestamppb.New(at)
			}
			var timeout time.Duration
			if wait != "" && wait != waitForever {
				d, err := time.ParseDuration(wait)
				if err != nil || d <= 0 {
					return fmt.Errorf("--wait %q: give a positive timeout such as 10m, or no value to wait as long as it takes", wait)
				}
				timeout = d
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			l, err := unwrap(c.Leases.CreateLease(ctx, connect.NewRequest(req)))
			if err != nil {
				return c.Explain(err)
			}
			if wait != "" {
				l, err = waitReady(ctx, c, l, timeout, cmd.ErrOrStderr(), true)
				if err != nil {
					return err
				}
			}
			return leasePrinter.print(cmd.OutOrStdout(), out.format, []*coordinatorv1.Lease{l}, true)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&selector, "selector", "l", "", "label selector of the exporters, e.g. board=rpi4,env!=prod")
	f.StringVar(&exporter, "exporter", "", "lease this exporter by name")
	f.DurationVar(&duration, "duration", 0, "how long the lease lasts once ready (default: the coordinator's, 30m)")
	f.StringVar(&begin, "begin", "", "not before this time (RFC 3339, \"2026-08-21 14:00\", or +1h)")
	f.StringVar(&end, "end", "", "end at this time, whatever happens")
	f.StringToStringVar(&tags, "tag", nil, "tag the lease, k=v (repeatable)")
	f.StringVar(&name, "name", "", "name the lease (default: generated)")
	f.StringVar(&wait, "wait", "", "wait until the lease is ready; --wait=10m gives up (and withdraws the lease) after 10m")
	f.Lookup("wait").NoOptDefVal = waitForever
	out.register(cmd)
	return cmd
}

// waitReady watches a lease until it is ready, writing why it waits to
// progress. If it ends first, or the wait times out or is interrupted, an
// error says why; a lease of the caller's own (made for this wait) is then
// withdrawn.
func waitReady(ctx context.Context, c *coordclient.Client, l *coordinatorv1.Lease, timeout time.Duration, progress io.Writer, own bool) (*coordinatorv1.Lease, error) {
	name := l.GetMetadata().GetName()
	wctx := ctx
	var cancel context.CancelFunc = func() {}
	if timeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	withdraw := func(why string) error {
		if !own {
			return errors.New(why)
		}
		// The caller gave up: withdraw it, even though ctx may be done.
		_, err := c.Leases.DeleteLease(context.WithoutCancel(ctx), connect.NewRequest(&coordinatorv1.DeleteLeaseRequest{Name: name}))
		if err != nil {
			return fmt.Errorf("%s; withdrawing lease %s failed too: %v", why, name, c.Explain(err))
		}
		return fmt.Errorf("%s; lease %s was withdrawn", why, name)
	}
	for {
		stream, err := c.Leases.WatchLease(wctx, connect.NewRequest(&coordinatorv1.WatchLeaseRequest{Name: name}))
		if err == nil {
			last := ""
			for stream.Receive() {
				l = stream.Msg()
				st := l.GetStatus()
				switch st.GetState() {
				case coordinatorv1.LeaseState_LEASE_STATE_READY:
					stream.Close()
					return l, nil
				case coordinatorv1.LeaseState_LEASE_STATE_ENDED:
					stream.Close()
					return nil, fmt.Errorf("lease %s ended before it was ready: %s (%s)", name, leaseReason(l), st.GetMessage())
				}
				if st.GetReason() == coordinatorv1.LeaseReason_LEASE_REASON_QUEUED {
					continue // not yet scheduled: the next message says more
				}
				if line := fmt.Sprintf("lease %s pending: %s", name, leaseReason(l)); line != last {
					fmt.Fprintln(progress, line)
					last = line
				}
			}
			err = stream.Err()
			stream.Close()
		}
		switch {
		case errors.Is(wctx.Err(), context.DeadlineExceeded) || connect.CodeOf(err) == connect.CodeDeadlineExceeded:
			return nil, withdraw(fmt.Sprintf("lease %s was not ready within %v (%s)", name, timeout, leaseReason(l)))
		case ctx.Err() != nil:
			return nil, withdraw("interrupted while waiting")
		case err == nil:
			return nil, fmt.Errorf("lease %s: the coordinator ended the watch; see `jmp get leases %s`", name, name)
		}
		// The coordinator went away (a restart): watch again.
		fmt.Fprintf(progress, "lost the coordinator (%v); watching again\n", c.Explain(err))
		t := time.NewTimer(time.Second)
		select {
		case <-t.C:
		case <-wctx.Done():
			t.Stop()
		}
	}
}

func newGetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "get", Short: "List exporters or leases"}
	var cf clientFlags
	cf.register(cmd)
	cmd.AddCommand(newGetExportersCmd(&cf), newGetLeasesCmd(&cf))
	return cmd
}

// getSpec is one `get` command: how to list a kind (with the selector and
// --all flags, where the kind has them) and how to get one by name.
type getSpec[T proto.Message] struct {
	cmd          *cobra.Command
	selectorHelp string // "" when the kind has no selector
	list         func(ctx context.Context, c *coordclient.Client, selector string, all bool) ([]T, error)
	get          func(ctx context.Context, c *coordclient.Client, name string) (T, error)
	printer      printer[T]
	allHelp      string // "" when the kind has no --all
}

// newGetCmdFor finishes spec.cmd: without names it lists, with names it
// gets each, and it prints them as -o says.
func newGetCmdFor[T proto.Message](cf *clientFlags, spec getSpec[T]) *cobra.Command {
	var (
		selector string
		all      bool
		out      output
	)
	cmd := spec.cmd
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := out.check(); err != nil {
			return err
		}
		c, err := cf.dial()
		if err != nil {
			return err
		}
		defer c.Close()
		var list []T
		if len(args) == 0 {
			if list, err = spec.list(cmd.Context(), c, selector, all); err != nil {
				return c.Explain(err)
			}
		}
		for _, name := range args {
			item, err := spec.get(cmd.Context(), c, name)
			if err != nil {
				return c.Explain(err)
			}
			list = append(list, item)
		}
		return spec.printer.print(cmd.OutOrStdout(), out.format, list, len(args) == 1)
	}
	if spec.selectorHelp != "" {
		cmd.Flags().StringVarP(&selector, "selector", "l", "", spec.selectorHelp)
	}
	if spec.allHelp != "" {
		cmd.Flags().BoolVar(&all, "all", false, spec.allHelp)
	}
	out.register(cmd)
	return cmd
}

func newGetExportersCmd(cf *clientFlags) *cobra.Command {
	return newGetCmdFor(cf, getSpec[*coordinatorv1.Exporter]{
		cmd: &cobra.Command{
			Use:     "exporters [NAME...]",
			Aliases: []string{"exporter"},
			Short:   "List exporters with their status, lease and labels",
			Example: "  jmp get exporters -l board=rpi4\n  jmp get exporter bench-01 -o yaml",
		},
		selectorHelp: "only exporters matching this label selector",
		list: func(ctx context.Context, c *coordclient.Client, selector string, _ bool) ([]*coordinatorv1.Exporter, error) {
			resp, err := unwrap(c.Leases.ListExporters(ctx, connect.NewRequest(&coordinatorv1.ListExportersRequest{Selector: selector})))
			return resp.GetExporters(), err
		},
		get: func(ctx context.Context, c *coordclient.Client, name string) (*coordinatorv1.Exporter, error) {
			return unwrap(c.Leases.GetExporter(ctx, connect.NewRequest(&coordinatorv1.GetExporterRequest{Name: name})))
		},
		printer: exporterPrinter,
	})
}

func newGetLeasesCmd(cf *clientFlags) *cobra.Command {
	return newGetCmdFor(cf, getSpec[*coordinatorv1.Lease]{
		cmd: &cobra.Command{
			Use:     "leases [NAME...]",
			Aliases: []string{"lease"},
			Short:   "List your leases (all leases, for an admin)",
			Example: "  jmp get leases\n  jmp get leases --all -l ci=nightly -o json",
		},
		selectorHelp: "only leases whose tags match this selector",
		allHelp:      "include ended leases",
		list: func(ctx context.Context, c *coordclient.Client, selector string, all bool) ([]*coordinatorv1.Lease, error) {
			resp, err := unwrap(c.Leases.ListLeases(ctx, connect.NewRequest(&coordinatorv1.ListLeasesRequest{TagSelector: selector, All: all})))
			return resp.GetLeases(), err
		},
		get: func(ctx context.Context, c *coordclient.Client, name string) (*coordinatorv1.Lease, error) {
			return unwrap(c.Leases.GetLease(ctx, connect.NewRequest(&coordinatorv1.GetLeaseRequest{Name: leaseName(name)})))
		},
		printer: leasePrinter,
	})
}

// leaseName accepts "lease/NAME" as kubectl's -o name writes it.
func leaseName(s string) string {
	return strings.TrimPrefix(s, "lease/")
}

func newUpdateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "update", Short: "Change a lease"}
	var cf clientFlags
	cf.register(cmd)
	cmd.AddCommand(newUpdateLeaseCmd(&cf))
	return cmd
}

func newUpdateLeaseCmd(cf *clientFlags) *cobra.Command {
	var extend, duration time.Duration
	var toClient string
	var out output
	cmd := &cobra.Command{
		Use:   "lease NAME (--extend D | --duration D | --to-client CLIENT)",
		Short: "Extend, resize or hand over a lease",
		Example: `  jmp update lease lease-k3x9q2ab --extend 30m
  jmp update lease lease-k3x9q2ab --duration 2h
  jmp update lease lease-k3x9q2ab --to-client ci-runner`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			req := &coordinatorv1.UpdateLeaseRequest{Name: leaseName(args[0])}
			n := 0
			f := cmd.Flags()
			if f.Changed("extend") {
				n++
				req.Change = &coordinatorv1.UpdateLeaseRequest_Extend{Extend: durationpb.New(extend)}
			}
			if f.Changed("duration") {
				n++
				req.Change = &coordinatorv1.UpdateLeaseRequest_Duration{Duration: durationpb.New(duration)}
			}
			if f.Changed("to-client") {
				n++
				req.Change = &coordinatorv1.UpdateLeaseRequest_ToClient{ToClient: toClient}
			}
			if n != 1 {
				return errors.New("give exactly one of --extend, --duration and --to-client")
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := unwrap(c.Leases.UpdateLease(cmd.Context(), connect.NewRequest(req)))
			if err != nil {
				return c.Explain(err)
			}
			return leasePrinter.print(cmd.OutOrStdout(), out.format, []*coordinatorv1.Lease{l}, true)
		},
	}
	cmd.Flags().DurationVar(&extend, "extend", 0, "add this much time, e.g. 30m")
	cmd.Flags().DurationVar(&duration, "duration", 0, "set the whole length from its begin (never into the past)")
	cmd.Flags().StringVar(&toClient, "to-client", "", "hand the lease to this client")
	out.register(cmd)
	return cmd
}

func newDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "delete", Short: "Release leases"}
	var cf clientFlags
	cf.register(cmd)
	cmd.AddCommand(newDeleteLeaseCmd(&cf))
	return cmd
}

func newDeleteLeaseCmd(cf *clientFlags) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:     "lease NAME...",
		Aliases: []string{"leases"},
		Short:   "Release leases: they end now and their exporters go to the next in line",
		Example: "  jmp delete lease lease-k3x9q2ab\n  jmp delete lease $(jmp get leases -o name)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var done []*coordinatorv1.Lease
			var errs []error
			for _, name := range args {
				l, err := unwrap(c.Leases.DeleteLease(cmd.Context(), connect.NewRequest(&coordinatorv1.DeleteLeaseRequest{Name: leaseName(name)})))
				if err != nil {
					errs = append(errs, c.Explain(err))
					continue
				}
				done = append(done, l)
			}
			if len(done) > 0 {
				if err := leasePrinter.print(cmd.OutOrStdout(), out.format, done, len(args) == 1); err != nil {
					return err
				}
			}
			if len(errs) > 1 {
				for _, err := range errs[:len(errs)-1] {
					fmt.Fprintln(cmd.ErrOrStderr(), "jmp:", err)
				}
			}
			if len(errs) > 0 {
				return errs[len(errs)-1]
			}
			return nil
		},
	}
	out.register(cmd)
	return cmd
}
