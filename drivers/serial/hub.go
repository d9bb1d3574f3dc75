package serial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
)

// maxBehind bounds the output queued for a console that does not read it.
// Past it the console is closed, so that a stuck client can neither hold
// memory nor slow the device or the other consoles. At 115200 baud it is
// over a minute of output.
const maxBehind = 1 << 20

// ErrBehind ends a console that fell more than maxBehind behind the device.
var ErrBehind = &wire.Error{Code: jumpmeshv1.Code_CODE_RESOURCE_EXHAUSTED,
	Message: fmt.Sprintf("the console fell more than %d KiB behind the device's output and was closed; open it again", maxBehind>>10)}

// ErrHubClosed ends the consoles of a device that was closed.
var ErrHubClosed = &wire.Error{Code: wire.Unavailable, Message: "the serial device was closed: the exporter is stopping"}

// Hub shares one device among any number of consoles: every console sees
// all the device's output from the moment it opens, and the input of every
// console goes to the device. Drivers write the device's output to the Hub
// and give it the device's input.
type Hub struct {
	inputMu sync.Mutex
	input   io.Writer

	mu       sync.Mutex
	consoles map[*console]struct{}
	err      error // why the hub closed
}

type console struct {
	out  []byte // output not yet sent; guarded by Hub.mu
	err  error  // set when the hub ends the console
	wake chan struct{}
}

// NewHub returns a hub that writes consoles' input to input.
func NewHub(input io.Writer) *Hub {
	return &Hub{input: input, consoles: map[*console]struct{}{}}
}

// Write passes the device's output p to every open console. It never
// blocks on a console, and never fails: output nobody is reading is lost,
// as on a real serial line.
func (h *Hub) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.consoles {
		if len(c.out)+len(p) > maxBehind {
			h.end(c, ErrBehind)
			continue
		}
		c.out = append(c.out, p...)
		c.signal()
	}
	return len(p), nil
}

// Console connects conn to the device; see Server.
func (h *Hub) Console(ctx context.Context, conn io.ReadWriter) error {
	c := &console{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.err != nil {
		h.mu.Unlock()
		return h.err
	}
	h.consoles[c] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.consoles, c)
		h.mu.Unlock()
	}()

	// The input copier ends when conn's input does; the exporter ends it
	// when this call returns.
	inputDone := make(chan error, 1)
	go func() { inputDone <- h.copyInput(conn) }()

	var out []byte
	flush := func() error {
		h.mu.Lock()
		out, c.out = c.out, out[:0]
		err := c.err
		h.mu.Unlock()
		if len(out) > 0 {
			if _, werr := conn.Write(out); werr != nil {
				return werr
			}
		}
		return err
	}
	for {
		if err := flush(); err != nil {
			return err
		}
		select {
		case <-c.wake:
		case err := <-inputDone:
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// copyInput writes conn's input to the device until conn's input ends.
func (h *Hub) copyInput(conn io.Reader) error {
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			h.inputMu.Lock()
			_, werr := h.input.Write(buf[:n])
			h.inputMu.Unlock()
			if werr != nil {
				return fmt.Errorf("write to the device: %w", werr)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Close ends every console with ErrHubClosed; consoles opened later fail
// with it.
func (h *Hub) Close() error {
	h.CloseWithError(ErrHubClosed)
	return nil
}

// CloseWithError ends every console with err, after the output they were
// sent, as when the device fails. Consoles opened later fail with err.
func (h *Hub) CloseWithError(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return
	}
	h.err = err
	for c := range h.consoles {
		h.end(c, err)
	}
}

// end ends c with err; h.mu is held.
func (h *Hub) end(c *console, err error) {
	c.err = err
	delete(h.consoles, c)
	c.signal()
}

func (c *console) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// open returns how many consoles are open.
func (h *Hub) open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.consoles)
}
