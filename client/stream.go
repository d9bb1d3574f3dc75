package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"google.golang.org/protobuf/proto"
)

// UnixOpener opens each stream as a new connection to a Unix socket.
type UnixOpener string

// OpenStream dials the socket.
func (p UnixOpener) OpenStream(ctx context.Context) (wire.Stream, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", string(p))
	if err != nil {
		return nil, fmt.Errorf("connect to exporter: %w", err)
	}
	return c, nil
}

// call is the client's end of one stream.
type call struct {
	ctx  context.Context
	s    wire.Stream
	r    *wire.Reader
	w    *wire.Writer
	stop func() bool
}

// open opens a stream and sends its header; the caller sends the rest of
// its direction and the CLOSE that ends it (a byte stream's data).
func (s *Session) open(ctx context.Context, h *jumpmeshv1.StreamHeader) (*call, error) {
	return s.start(ctx, h, false)
}

// request opens a stream and sends a whole request: its header and the
// CLOSE that ends the client's direction, in one write (on QUIC, one
// packet).
func (s *Session) request(ctx context.Context, h *jumpmeshv1.StreamHeader) (*call, error) {
	return s.start(ctx, h, true)
}

// start opens a stream and sends its header, and the client's CLOSE after
// it if done. Cancelling ctx closes the stream, which unblocks any read or
// write on it.
func (s *Session) start(ctx context.Context, h *jumpmeshv1.StreamHeader, done bool) (*call, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := s.opener.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	c := &call{ctx: ctx, s: st, r: wire.NewReader(st), w: wire.NewWriter(st)}
	c.stop = context.AfterFunc(ctx, func() { st.Close() })
	err = c.w.AddMessage(wire.KindHeader, h)
	if err == nil && done {
		err = c.w.AddClose(nil)
	}
	if err == nil {
		err = c.w.Flush()
	}
	if err != nil {
		c.close()
		return nil, c.fail(ctx, err)
	}
	return c, nil
}

func (c *call) close() {
	c.stop()
	c.s.Close()
}

// fail turns a transport error into the reason a person needs: the
// context's error when it ended the stream.
func (c *call) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &wire.Error{Code: wire.Unavailable, Message: "the exporter closed the stream unexpectedly"}
	}
	return err
}

// remoteError decodes the exporter's CLOSE. The exporter enforces the call's
// deadline too, and may hit it a moment before the client does: that is the
// client's own deadline, reported as such.
func (c *call) remoteError(payload []byte) error {
	err := wire.ErrorOf(payload)
	if deadline, ok := c.ctx.Deadline(); ok && errors.Is(err, &wire.Error{Code: wire.DeadlineExceeded}) && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return err
}

// finishSending ends the client's direction with CLOSE OK. The transport
// stays open: closing it tells the exporter the client has gone.
func (c *call) finishSending() error {
	if err := c.w.AddClose(nil); err != nil {
		return err
	}
	return c.w.Flush()
}

// recvOnly reads one MESSAGE into m, then CLOSE.
func (c *call) recvOnly(m proto.Message) error {
	got := false
	err := c.recvEach(func() proto.Message { return m }, func(proto.Message) error {
		if got {
			return &wire.Error{Code: wire.Internal, Message: "the exporter sent more than one response"}
		}
		got = true
		return nil
	})
	if err == nil && !got {
		return &wire.Error{Code: wire.Internal, Message: "the exporter sent no response"}
	}
	return err
}

// recvEach hands each MESSAGE to fn until CLOSE.
func (c *call) recvEach(newMsg func() proto.Message, fn func(proto.Message) error) error {
	for {
		f, err := c.r.Read()
		if err != nil {
			return err
		}
		switch f.Kind {
		case wire.KindMessage:
			m := newMsg()
			if err := proto.Unmarshal(f.Payload, m); err != nil {
				return fmt.Errorf("decode %T from exporter: %w", m, err)
			}
			if err := fn(m); err != nil {
				return err
			}
		case wire.KindClose:
			return c.remoteError(f.Payload)
		default:
			return fmt.Errorf("%w: unexpected %v frame", wire.ErrMalformed, f.Kind)
		}
	}
}
