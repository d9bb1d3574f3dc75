package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	"github.com/jumpmesh/jumpmesh/drivers/serial"
	"github.com/jumpmesh/jumpmesh/drivers/shell"
	"github.com/jumpmesh/jumpmesh/drivers/storage"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/spf13/cobra"
)

// reportTimeout bounds how long j waits for the exporter's report, which
// it needs before it can even parse its arguments.
const reportTimeout = 15 * time.Second

// interfaceCommands gives each driver interface's j subcommands.
var interfaceCommands = map[string]func(*client.Driver) []*cobra.Command{
	power.Interface:   power.Commands,
	serial.Interface:  serial.Commands,
	storage.Interface: storage.Commands,
	shell.Interface:   shell.Commands,
}

// newJCmd builds j's command tree from the report of the exporter JMP_HOST
// names. When there is no exporter to ask, every invocation fails with the
// reason, except help.
func newJCmd(ctx context.Context) *cobra.Command {
	root := &cobra.Command{
		Use:   "j",
		Short: "Drive the device of this jmp shell",
		Long: `j drives the device of the 'jmp shell' it runs in. With no arguments it prints
the device's driver tree; each driver is a subcommand, with the commands of the
interfaces it implements (power, serial, storage, ...).`,
		Example: `  j
  j power on
  j serial expect 'login:' -- j power cycle
  j storage flash image.raw.xz`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	session, err := client.FromEnv()
	var report *jumpmeshv1.Report
	if err == nil {
		rctx, cancel := context.WithTimeout(ctx, reportTimeout)
		report, err = session.Report(rctx)
		cancel()
	}
	if err != nil {
		root.Args = cobra.ArbitraryArgs
		root.RunE = func(*cobra.Command, []string) error { return err }
		return root
	}
	root.Args = cobra.NoArgs
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := printTree(cmd.OutOrStdout(), report, cmd); err != nil {
			return err
		}
		if status := sessionStatus(); status != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "session: %s\n", status)
		}
		return nil
	}
	children := map[string][]*jumpmeshv1.DriverReport{}
	for _, d := range report.GetDrivers() {
		children[d.GetParentUuid()] = append(children[d.GetParentUuid()], d)
	}
	var add func(parent *cobra.Command, parentUUID, parentPath string)
	add = func(parent *cobra.Command, parentUUID, parentPath string) {
		for _, d := range children[parentUUID] {
			path := d.GetName()
			if parentPath != "" {
				path = parentPath + "." + path
			}
			dc := driverCmd(session, d, path)
			add(dc, d.GetUuid(), path)
			parent.AddCommand(dc)
		}
	}
	add(root, "", "")
	return root
}

func driverCmd(s *client.Session, d *jumpmeshv1.DriverReport, path string) *cobra.Command {
	short := d.GetDescription()
	if short == "" {
		short = d.GetType()
	}
	cmd := &cobra.Command{
		Use:   d.GetName(),
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	handle, err := s.Driver(context.Background(), path)
	if err != nil {
		return cmd // the report is cached, so this cannot fail in practice
	}
	var unknown []string
	for _, iface := range d.GetInterfaces() {
		commands, ok := interfaceCommands[iface.GetName()]
		if !ok {
			unknown = append(unknown, iface.GetName())
			continue
		}
		cmd.AddCommand(commands(handle)...)
	}
	if len(unknown) > 0 {
		cmd.Long = fmt.Sprintf("%s\n\nThis j has no commands for: %s. A newer jmp, or the Go client, can call them.", short, strings.Join(unknown, ", "))
	}
	return cmd
}

// printTree prints the driver tree, one driver a line, with the j commands
// each driver has.
func printTree(w io.Writer, r *jumpmeshv1.Report, root *cobra.Command) error {
	labels := make([]string, 0, len(r.GetLabels()))
	for _, k := range slices.Sorted(maps.Keys(r.GetLabels())) {
		labels = append(labels, k+"="+r.GetLabels()[k])
	}
	header := r.GetName()
	if len(labels) > 0 {
		header += " (" + strings.Join(labels, ", ") + ")"
	}
	fmt.Fprintln(w, header)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	children := map[string][]*jumpmeshv1.DriverReport{}
	for _, d := range r.GetDrivers() {
		children[d.GetParentUuid()] = append(children[d.GetParentUuid()], d)
	}
	var walk func(parentUUID, indent string, parent *cobra.Command)
	walk = func(parentUUID, indent string, parent *cobra.Command) {
		kids := children[parentUUID]
		for i, d := range kids {
			branch, next := "├── ", "│   "
			if i == len(kids)-1 {
				branch, next = "└── ", "    "
			}
			cmd, _, _ := parent.Find([]string{d.GetName()})
			var verbs []string
			for _, sub := range cmd.Commands() {
				if !slices.ContainsFunc(children[d.GetUuid()], func(c *jumpmeshv1.DriverReport) bool { return c.GetName() == sub.Name() }) {
					verbs = append(verbs, sub.Name())
				}
			}
			fmt.Fprintf(tw, "%s%s%s\t%s\t%s\t%s\n", indent, branch, d.GetName(), d.GetType(), d.GetDescription(), strings.Join(verbs, ", "))
			walk(d.GetUuid(), indent+next, cmd)
		}
	}
	walk("", "", root)
	return tw.Flush()
}

// statusTimeout bounds asking jmp shell how the session goes: it answers
// at once, or not at all.
const statusTimeout = time.Second

// sessionStatus is how the session of the jmp shell j runs in goes ("direct,
// rtt 0.42ms"), or "" for a session with no such status (local mode).
func sessionStatus() string {
	dir := os.Getenv(sessionDirEnv)
	if dir == "" {
		return ""
	}
	c, err := net.DialTimeout("unix", filepath.Join(dir, statusSocketName), statusTimeout)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(statusTimeout))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// exitCoder is an error that carries the exit code j should end with, as
// `j scripts run` passes on its command's.
type exitCoder interface{ ExitCode() int }

func asExitCode(err error) (int, bool) {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode(), true
	}
	return 0, false
}
