package serial

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"

	"github.com/jumpmesh/jumpmesh/client"
	serialv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/serial/v1"
)

// Client drives a serial driver.
type Client struct{ d *client.Driver }

// NewClient returns a client of d, which must implement Interface.
func NewClient(d *client.Driver) *Client { return &Client{d: d} }

// Console opens a console: Read returns the device's output from now on,
// Write sends input. CloseWrite ends the input; the exporter then ends the
// stream once it has passed all input on. Close abandons it; ending ctx
// does too.
func (c *Client) Console(ctx context.Context) (*client.ByteStream, error) {
	return c.d.OpenBytes(ctx, Interface, "Console", &serialv1.ConsoleRequest{})
}

// expectWindow bounds the output Expect matches against: the most recent
// bytes, enough for any prompt or log line.
const expectWindow = 64 << 10

// NoMatchError says that the output ended before the pattern matched.
type NoMatchError struct {
	Pattern string
	// LastLine is the last non-empty line of output seen.
	LastLine string
	// Err is why reading ended: io.EOF, or the stream's error.
	Err error
}

func (e *NoMatchError) Error() string {
	return fmt.Sprintf("no match for %q (last line seen: %q): %v", e.Pattern, e.LastLine, e.Err)
}

func (e *NoMatchError) Unwrap() error { return e.Err }

// Expect reads r, copying what it reads to echo as it comes, until re
// matches the output seen so far (its last 64 KiB). It returns the match,
// or a *NoMatchError when reading ends first; to bound the wait, make r's
// reads fail, as ending a Console's ctx does.
func Expect(r io.Reader, re *regexp.Regexp, echo io.Writer) ([]byte, error) {
	var seen []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := echo.Write(buf[:n]); werr != nil {
				return nil, fmt.Errorf("echo output: %w", werr)
			}
			seen = append(seen, buf[:n]...)
			if over := len(seen) - expectWindow; over > 0 {
				seen = append(seen[:0], seen[over:]...)
			}
			if m := re.Find(seen); m != nil {
				return bytes.Clone(m), nil
			}
		}
		if err != nil {
			return nil, &NoMatchError{Pattern: re.String(), LastLine: lastLine(seen), Err: err}
		}
	}
}

// lastLine is the last non-empty line of b, without its line ending.
func lastLine(b []byte) string {
	lines := bytes.Split(b, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if l := bytes.TrimRight(lines[i], "\r"); len(bytes.TrimSpace(l)) > 0 {
			return string(l)
		}
	}
	return ""
}
