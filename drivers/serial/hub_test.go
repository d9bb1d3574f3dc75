package serial

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// buffer is a bytes.Buffer safe for a writer and a reader.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testConn is a console client: it types into in and reads out.
type testConn struct {
	typed *io.PipeWriter
	in    *io.PipeReader
	out   buffer
	done  chan error
}

func (c *testConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *testConn) Write(p []byte) (int, error) { return c.out.Write(p) }

// open opens a console on h and waits until it is attached.
func open(ctx context.Context, h *Hub) *testConn {
	c := &testConn{done: make(chan error, 1)}
	c.in, c.typed = io.Pipe()
	go func() {
		c.done <- h.Console(ctx, c)
		c.in.Close() // as the exporter does when the call returns
	}()
	synctest.Wait()
	return c
}

func TestHubFansOutAndIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var device buffer
		h := NewHub(&device)
		h.Write([]byte("before anyone listened\n"))
		a := open(t.Context(), h)
		h.Write([]byte("boot\n"))
		b := open(t.Context(), h)
		h.Write([]byte("login: "))
		synctest.Wait()
		require.Equal(t, "boot\nlogin: ", a.out.String(), "a console sees all output from when it opened")
		require.Equal(t, "login: ", b.out.String())

		io.WriteString(a.typed, "root\n")
		io.WriteString(b.typed, "uname\n")
		synctest.Wait()
		require.Equal(t, "root\nuname\n", device.String(), "input of every console goes to the device")
		require.Equal(t, 2, h.open())

		a.typed.Close() // end of input ends the console, after the input was passed on
		require.NoError(t, <-a.done)
		require.Equal(t, 1, h.open())
		b.typed.Close()
		require.NoError(t, <-b.done)
		require.Equal(t, 0, h.open())
	})
}

func TestHubConsoleEnds(t *testing.T) {
	errGone := errors.New("the client went away")
	tests := []struct {
		name string
		end  func(c *testConn, cancel context.CancelFunc, h *Hub)
		want error
	}{
		{"client disconnects", func(c *testConn, _ context.CancelFunc, _ *Hub) { c.typed.CloseWithError(errGone) }, errGone},
		{"call cancelled", func(_ *testConn, cancel context.CancelFunc, _ *Hub) { cancel() }, context.Canceled},
		{"device closed", func(_ *testConn, _ context.CancelFunc, h *Hub) { h.Close() }, ErrHubClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := NewHub(io.Discard)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				c := open(ctx, h)
				h.Write([]byte("some output"))
				synctest.Wait()
				tt.end(c, cancel, h)
				require.ErrorIs(t, <-c.done, tt.want)
				require.Equal(t, 0, h.open(), "the console's slot is freed")
				h.Write([]byte("more output")) // goes nowhere, blocks nothing
				// synctest.Test fails if any goroutine of the console is left.
			})
		})
	}
}

func TestHubClosedRefusesConsoles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(io.Discard)
		require.NoError(t, h.Close())
		c := open(t.Context(), h)
		require.ErrorIs(t, <-c.done, ErrHubClosed)
	})
}

func TestHubCloseWithErrorFlushesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(io.Discard)
		c := open(t.Context(), h)
		errUnplugged := errors.New("unplugged")
		h.mu.Lock() // the console cannot flush until both happened
		for con := range h.consoles {
			con.out = append(con.out, "last words"...)
		}
		h.mu.Unlock()
		h.CloseWithError(errUnplugged)
		require.ErrorIs(t, <-c.done, errUnplugged)
		require.Equal(t, "last words", c.out.String(), "output sent before the device failed still arrives")
	})
}

// stuckConn never returns from Write, like a client that stopped reading.
type stuckConn struct {
	*testConn
	release chan struct{}
}

func (s stuckConn) Write(p []byte) (int, error) {
	<-s.release
	return len(p), nil
}

func TestHubDropsConsoleThatFallsBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(io.Discard)
		fast := open(t.Context(), h)
		slow := stuckConn{testConn: &testConn{}, release: make(chan struct{})}
		slow.in, slow.typed = io.Pipe()
		slowDone := make(chan error, 1)
		go func() { slowDone <- h.Console(t.Context(), slow); slow.in.Close() }()
		synctest.Wait()

		chunk := bytes.Repeat([]byte("x"), 64<<10)
		h.Write(chunk) // the slow console takes this one and gets stuck writing it
		synctest.Wait()
		for range maxBehind/len(chunk) + 1 {
			h.Write(chunk) // never blocks on the stuck console
			synctest.Wait()
		}
		close(slow.release)
		require.ErrorIs(t, <-slowDone, ErrBehind)
		require.Equal(t, 1, h.open(), "the fast console stays")
		require.Equal(t, (maxBehind/len(chunk)+2)*len(chunk), len(fast.out.String()), "and saw everything")
		fast.typed.Close()
		require.NoError(t, <-fast.done)
	})
}
