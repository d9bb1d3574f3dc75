// Command jmp is jumpmesh's one binary: the CLI for people and scripts, the
// exporter daemon, the coordinator and the relay. Called as `j` (a link to
// it), it is the in-shell client that drives the leased device.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/jumpmesh/jumpmesh/cmd/jmp/version"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args))
}

// run executes the command line and returns the process's exit code.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var root *cobra.Command
	if filepath.Base(args[0]) == "j" {
		root = newJCmd(ctx)
	} else {
		root = newRootCmd()
	}
	root.SetArgs(args[1:])
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if code, ok := asExitCode(err); ok {
		return code
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", root.Name(), err)
	return 1
}

// exitError ends the process with a code and no message, as when `jmp
// shell` passes on its command's exit code.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit code %d", e.code) }

// ExitCode is the code to end with.
func (e *exitError) ExitCode() int { return e.code }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "jmp",
		Short: "jumpmesh: lease lab devices and drive them from anywhere",
		Long: `jmp leases lab devices (boards, ECUs, phones, VMs) and drives them: power,
serial console, flashing, commands. Inside 'jmp shell', 'j' drives the device.`,
		Example: `  # Drive a virtual board without any coordinator:
  jmp shell --exporter-config examples/virtual-board.yaml
  j power on`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newShellCmd(),
		newVersionCmd(),
		newCompletionCmd(),
		newCoordinatorCmd(),
		newRunCmd(),
		newRelayCmd(),
		newCreateCmd(),
		newGetCmd(),
		newUpdateCmd(),
		newDeleteCmd(),
		newAdminCmd(),
		newConfigCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print jmp's version",
		Example: "  jmp version",
		Args:    cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String())
		},
	}
}

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Example: `  source <(jmp completion bash)
  jmp completion fish > ~/.config/fish/completions/jmp.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			}
			return root.GenFishCompletion(out, true)
		},
	}
}
