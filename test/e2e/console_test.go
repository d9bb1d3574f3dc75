package e2e

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
)

// ptyOutput collects what a program prints on its terminal.
type ptyOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *ptyOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// after reports whether want appears in the output after offset, and where
// it ends.
func (o *ptyOutput) after(offset int, want string) (int, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := bytes.Index(o.buf.Bytes()[offset:], []byte(want))
	if i < 0 {
		return offset, false
	}
	return offset + i + len(want), true
}

// TestInteractiveConsole drives `j serial console` on a real terminal: raw
// mode sends Ctrl-C to the device instead of killing j, and Ctrl-] leaves.
func TestInteractiveConsole(t *testing.T) {
	dir := board(t)
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, jmp, "shell", "--exporter-config", "board.yaml", "--",
		"sh", "-c", "j serial expect 'login:' -- j power on >/dev/null && exec j serial console")
	cmd.Dir = dir
	tty, err := pty.Start(cmd)
	require.NoError(t, err)
	defer tty.Close()
	var out ptyOutput
	go io.Copy(&out, tty)

	seen := 0
	expect := func(want string) {
		t.Helper()
		require.Eventually(t, func() bool {
			var ok bool
			seen, ok = out.after(seen, want)
			return ok
		}, commandTimeout, 5*time.Millisecond, "want %q on the terminal; it shows:\n%s", want, out.String())
	}
	expect("press Ctrl-] to leave")
	tty.Write([]byte("uname\r"))
	expect("Linux")
	tty.Write([]byte{0x03}) // Ctrl-C goes to the board, which echoes ^C
	expect("^C")
	tty.Write([]byte("cat /etc/version\r"))
	expect("jumpmesh")
	tty.Write([]byte{0x1d}) // Ctrl-]
	expect("Left the console.")
	require.NoError(t, cmd.Wait(), "terminal:\n%s", out.String())
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
