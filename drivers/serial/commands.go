package serial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// escapeKey leaves an interactive console: Ctrl-], as telnet taught people.
const escapeKey = 0x1d

var errEscaped = errors.New("escape key pressed")

// Commands are the `j` subcommands of a serial driver.
func Commands(d *client.Driver) []*cobra.Command {
	j := "j " + strings.ReplaceAll(d.Path, ".", " ")
	c := NewClient(d)
	return []*cobra.Command{consoleCmd(c, j), pipeCmd(c, j), expectCmd(c, j)}
}

func consoleCmd(c *Client, j string) *cobra.Command {
	return &cobra.Command{
		Use:   "console",
		Short: "Use the serial console interactively (Ctrl-] leaves)",
		Long: drivers.MethodDescription(service, "Console") + `

On a terminal, the terminal is put in raw mode so that every key, Ctrl-C
included, goes to the device; press Ctrl-] to leave. Other consoles of the
same device stay open and see the same output.`,
		Example: "  " + j + " console",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := c.Console(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			nl := "\n"
			if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				old, err := term.MakeRaw(int(f.Fd()))
				if err != nil {
					return fmt.Errorf("put the terminal in raw mode: %w", err)
				}
				defer term.Restore(int(f.Fd()), old)
				nl = "\r\n" // raw mode: the terminal no longer adds the \r
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Connected to the console; press Ctrl-] to leave.%s", nl)

			outDone := make(chan error, 1)
			go func() { outDone <- copyOutput(cmd.OutOrStdout(), st) }()
			// A read of a terminal cannot be interrupted: if the console ends
			// first, this goroutine stays blocked until the process exits.
			inDone := make(chan error, 1)
			go func() { inDone <- copyUntilEscape(st, cmd.InOrStdin()) }()
			select {
			case err := <-outDone:
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%sThe exporter closed the console.%s", nl, nl)
				}
				return err
			case err := <-inDone:
				switch {
				case errors.Is(err, errEscaped):
					fmt.Fprintf(cmd.ErrOrStderr(), "%sLeft the console.%s", nl, nl)
					return nil
				case err != nil:
					return err
				}
				// Input ended: let the exporter pass it on and end the console.
				if err := st.CloseWrite(); err != nil {
					return err
				}
				return <-outDone
			case <-ctx.Done():
				return nil
			}
		},
	}
}

func pipeCmd(c *Client, j string) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "pipe [--follow]",
		Short: "Pipe stdin to the device and the device's output to stdout",
		Long: `Pipe copies stdin to the device and the device's output to stdout.

It ends when stdin ends, once the input reached the device; with --follow it
keeps printing the output after that, until the console closes or you
interrupt it.`,
		Example: fmt.Sprintf("  printf 'uname -a\\n' | %s pipe\n  %s pipe --follow </dev/null >console.log", j, j),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := c.Console(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			outDone := make(chan error, 1)
			go func() { outDone <- copyOutput(cmd.OutOrStdout(), st) }()
			inDone := make(chan error, 1)
			go func() {
				_, err := io.Copy(st, cmd.InOrStdin())
				inDone <- err
			}()
			select {
			case err := <-outDone:
				return err
			case <-ctx.Done():
				return nil
			case err := <-inDone:
				if err != nil {
					return err
				}
			}
			if !follow {
				if err := st.CloseWrite(); err != nil {
					return err
				}
			}
			select {
			case err := <-outDone:
				return err
			case <-ctx.Done():
				return nil
			}
		},
	}
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing output after stdin ends")
	return cmd
}

func expectCmd(c *Client, j string) *cobra.Command {
	var (
		timeout time.Duration
		send    string
	)
	cmd := &cobra.Command{
		Use:   "expect PATTERN [--timeout 30s] [--send TEXT] [-- CMD ARGS...]",
		Short: "Wait for output matching a regular expression",
		Long: `Expect opens the console, then sends TEXT (and a newline) and runs CMD if given,
so that no output they cause is missed. It prints the output as it comes and
succeeds as soon as the Go regular expression PATTERN matches it; it fails
when --timeout passes first, or when CMD fails. CMD's own output goes to
stderr, so that stdout holds only the device's.`,
		Example: fmt.Sprintf("  %s expect 'login:' -- j power on\n  %s expect --send uname 'Linux'\n  %s expect --timeout 2m 'Welcome' -- j power cycle", j, j, j),
		Args: func(cmd *cobra.Command, args []string) error {
			if n := cmd.ArgsLenAtDash(); n == 0 || (n < 0 && len(args) != 1) || n > 1 {
				return errors.New("want one PATTERN, then optionally -- CMD ARGS")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			pattern, command := args[0], args[1:]
			re, err := regexp.Compile(pattern)
			if err != nil {
				return fmt.Errorf("PATTERN %q is not a Go regular expression: %w", pattern, err)
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout %v is not positive; give how long to wait, like 30s", timeout)
			}
			return runExpect(cmd, c, re, timeout, send, command)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for a match")
	cmd.Flags().StringVar(&send, "send", "", "text to send, with a newline, once the console is open")
	return cmd
}

func runExpect(cmd *cobra.Command, c *Client, re *regexp.Regexp, timeout time.Duration, send string, command []string) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	st, err := c.Console(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if send != "" {
		if _, err := io.WriteString(st, send+"\n"); err != nil {
			return err
		}
	}
	var cmdDone chan error
	if len(command) > 0 {
		ex := exec.CommandContext(ctx, command[0], command[1:]...)
		ex.Stdin, ex.Stdout, ex.Stderr = nil, cmd.ErrOrStderr(), cmd.ErrOrStderr()
		if err := ex.Start(); err != nil {
			return fmt.Errorf("run %s: %w", command[0], err)
		}
		cmdDone = make(chan error, 1)
		go func() {
			if err := ex.Wait(); err != nil {
				cmdDone <- fmt.Errorf("%s failed: %w", strings.Join(command, " "), err)
				return
			}
			cmdDone <- nil
		}()
	}
	matched := make(chan error, 1)
	go func() {
		_, err := Expect(st, re, cmd.OutOrStdout())
		matched <- err
	}()
	for {
		select {
		case err := <-cmdDone:
			if err != nil && ctx.Err() == nil {
				st.Close()
				<-matched
				return err
			}
			cmdDone = nil // it succeeded: keep waiting for the match
		case err := <-matched:
			st.Close()
			if err != nil {
				return expectFailure(ctx, re, timeout, err)
			}
			if cmdDone != nil {
				// Matched before CMD ended: its outcome still decides.
				if err := <-cmdDone; err != nil {
					return err
				}
			}
			return nil
		}
	}
}

func expectFailure(ctx context.Context, re *regexp.Regexp, timeout time.Duration, err error) error {
	var nm *NoMatchError
	if !errors.As(err, &nm) {
		return err
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %v waiting for %q; last line seen: %q", timeout, re.String(), nm.LastLine)
	}
	if errors.Is(nm.Err, io.EOF) {
		return fmt.Errorf("the console closed before %q matched; last line seen: %q", re.String(), nm.LastLine)
	}
	return err
}

// copyOutput copies the console's output to w until the console ends;
// a clean end is nil.
func copyOutput(w io.Writer, st io.Reader) error {
	_, err := io.Copy(w, st)
	return err
}

// copyUntilEscape copies r to w until r ends (nil) or the escape key comes
// (errEscaped), passing on what came before the key.
func copyUntilEscape(w io.Writer, r io.Reader) error {
	buf := make([]byte, 1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			p := buf[:n]
			i := bytes.IndexByte(p, escapeKey)
			if i >= 0 {
				p = p[:i]
			}
			if _, werr := w.Write(p); werr != nil {
				return werr
			}
			if i >= 0 {
				return errEscaped
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read input: %w", err)
		}
	}
}

// describe is the method's description from the proto, for help text.
