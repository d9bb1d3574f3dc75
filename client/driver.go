package client

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Driver is a handle on one driver of a session.
type Driver struct {
	session *Session
	// Path is the driver's dotted path in the tree, e.g. "board.serial".
	Path   string
	Report *jumpmeshv1.DriverReport
}

// Implements says whether the driver serves the interface (a full service
// name such as "jumpmesh.drivers.power.v1.Power").
func (d *Driver) Implements(iface string) bool {
	return slices.ContainsFunc(d.Report.GetInterfaces(), func(i *jumpmeshv1.InterfaceReport) bool { return i.GetName() == iface })
}

// header is the stream header of a call of method with req.
func (d *Driver) header(ctx context.Context, iface, method string, req proto.Message) (*jumpmeshv1.StreamHeader, error) {
	args, err := anypb.New(req)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", req, err)
	}
	cr := &jumpmeshv1.CallRequest{DriverUuid: d.Report.GetUuid(), Interface: iface, Method: method, Args: args}
	if deadline, ok := ctx.Deadline(); ok {
		cr.Timeout = durationpb.New(time.Until(deadline))
	}
	return &jumpmeshv1.StreamHeader{Op: &jumpmeshv1.StreamHeader_Call{Call: cr}}, nil
}

// request starts a call whose request is all the client sends.
func (d *Driver) request(ctx context.Context, iface, method string, req proto.Message) (*call, error) {
	h, err := d.header(ctx, iface, method, req)
	if err != nil {
		return nil, err
	}
	return d.session.request(ctx, h)
}

func (d *Driver) wrap(method string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", d.Path, method, err)
}

// Call makes a unary call and decodes the response into resp.
func (d *Driver) Call(ctx context.Context, iface, method string, req, resp proto.Message) error {
	c, err := d.request(ctx, iface, method, req)
	if err != nil {
		return d.wrap(method, err)
	}
	defer c.close()
	if err := c.recvOnly(resp); err != nil {
		return d.wrap(method, c.fail(ctx, err))
	}
	return nil
}

// Stream makes a server-streaming call and hands each response to fn.
func Stream[Resp proto.Message](ctx context.Context, d *Driver, iface, method string, req proto.Message, fn func(Resp) error) error {
	c, err := d.request(ctx, iface, method, req)
	if err != nil {
		return d.wrap(method, err)
	}
	defer c.close()
	var zero Resp
	newResp := func() proto.Message { return zero.ProtoReflect().Type().New().Interface() }
	if err := c.recvEach(newResp, func(m proto.Message) error { return fn(m.(Resp)) }); err != nil {
		return d.wrap(method, c.fail(ctx, err))
	}
	return nil
}

// OpenBytes opens a byte stream. It returns once the exporter has accepted
// it, so a bad driver or method fails before any data is sent.
func (d *Driver) OpenBytes(ctx context.Context, iface, method string, req proto.Message) (*ByteStream, error) {
	h, err := d.header(ctx, iface, method, req)
	if err != nil {
		return nil, d.wrap(method, err)
	}
	c, err := d.session.open(ctx, h)
	if err != nil {
		return nil, d.wrap(method, err)
	}
	f, err := c.r.Read()
	switch {
	case err != nil:
		c.close()
		return nil, d.wrap(method, c.fail(ctx, err))
	case f.Kind == wire.KindClose:
		c.close()
		if err := c.remoteError(f.Payload); err != nil {
			return nil, d.wrap(method, err)
		}
		return nil, d.wrap(method, fmt.Errorf("%w: the exporter ended the stream before opening it", wire.ErrMalformed))
	case f.Kind != wire.KindOpen:
		c.close()
		return nil, d.wrap(method, fmt.Errorf("%w: want OPEN, got %v", wire.ErrMalformed, f.Kind))
	}
	return &ByteStream{ctx: ctx, c: c, wrap: func(err error) error { return d.wrap(method, err) }}, nil
}

// ByteStream is the client's end of a byte stream. Read and Write may be
// used from different goroutines.
type ByteStream struct {
	ctx  context.Context
	c    *call
	wrap func(error) error

	readMu    sync.Mutex
	pending   []byte // DATA not yet returned by Read
	result    []byte // the response MESSAGE, once it came
	gotResult bool
	readErr   error // io.EOF after a clean CLOSE

	writeMu sync.Mutex
	closed  bool
}

// Read returns the exporter's bytes. After the exporter ends the stream it
// returns io.EOF, or the error the exporter ended it with.
func (b *ByteStream) Read(p []byte) (int, error) {
	b.readMu.Lock()
	defer b.readMu.Unlock()
	for len(b.pending) == 0 {
		if b.readErr != nil {
			return 0, b.readErr
		}
		b.readFrame()
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// readFrame reads one frame into pending, result or readErr.
func (b *ByteStream) readFrame() {
	f, err := b.c.r.Read()
	if err != nil {
		b.readErr = b.wrap(b.c.fail(b.ctx, err))
		return
	}
	switch f.Kind {
	case wire.KindData:
		// The frame's payload is only valid until the next read.
		b.pending = append(b.pending[:0], f.Payload...)
	case wire.KindMessage:
		b.result = append([]byte(nil), f.Payload...)
		b.gotResult = true
	case wire.KindClose:
		if err := b.c.remoteError(f.Payload); err != nil {
			b.readErr = b.wrap(err)
		} else {
			b.readErr = io.EOF
		}
	default:
		b.readErr = b.wrap(fmt.Errorf("%w: unexpected %v frame", wire.ErrMalformed, f.Kind))
	}
}

// Write sends bytes to the exporter.
func (b *ByteStream) Write(p []byte) (int, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	if b.closed {
		return 0, b.wrap(fmt.Errorf("write after CloseWrite"))
	}
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), wire.DataChunkSize)]
		if err := b.c.w.Write(wire.KindData, chunk); err != nil {
			return n, b.wrap(b.c.fail(b.ctx, err))
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// CloseWrite tells the exporter the client has sent everything.
func (b *ByteStream) CloseWrite() error {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if err := b.c.finishSending(); err != nil {
		return b.wrap(b.c.fail(b.ctx, err))
	}
	return nil
}

// Wait ends the client's direction, reads what the exporter still sends
// until it ends the stream (discarding data nobody read), and decodes the
// method's response into resp (which may be nil).
func (b *ByteStream) Wait(resp proto.Message) error {
	if err := b.CloseWrite(); err != nil {
		return err
	}
	b.readMu.Lock()
	defer b.readMu.Unlock()
	for b.readErr == nil {
		b.pending = b.pending[:0]
		b.readFrame()
	}
	if b.readErr != io.EOF {
		return b.readErr
	}
	if resp != nil {
		if !b.gotResult {
			return b.wrap(fmt.Errorf("%w: the exporter sent no response", wire.ErrMalformed))
		}
		if err := proto.Unmarshal(b.result, resp); err != nil {
			return b.wrap(fmt.Errorf("decode %T: %w", resp, err))
		}
	}
	return nil
}

// Close abandons the stream in both directions; the exporter sees the
// client go away and frees the driver.
func (b *ByteStream) Close() error {
	b.c.close()
	return nil
}
