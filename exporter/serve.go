package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"

	"github.com/jumpmesh/jumpmesh/drivers"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"google.golang.org/protobuf/proto"
)

// Acceptor hands out the streams that clients open.
type Acceptor interface {
	AcceptStream(ctx context.Context) (wire.Stream, error)
}

// Serve answers every stream a accepts until ctx ends or a fails, then
// waits for the streams in flight, which ctx's end cancels.
func (e *Exporter) Serve(ctx context.Context, a Acceptor) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		s, err := a.AcceptStream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept stream: %w", err)
		}
		wg.Go(func() { e.ServeStream(ctx, s) })
	}
}

// ServeListener serves each connection of l as one stream, until ctx ends.
// It closes l.
func (e *Exporter) ServeListener(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	return e.Serve(ctx, listenerAcceptor{l})
}

type listenerAcceptor struct{ l net.Listener }

func (a listenerAcceptor) AcceptStream(context.Context) (wire.Stream, error) { return a.l.Accept() }

// ServeStream answers one stream and closes it.
func (e *Exporter) ServeStream(ctx context.Context, s wire.Stream) {
	defer s.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Ending ctx (the exporter stopping, a timeout) unblocks every read and
	// write on the stream.
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()

	st := &serverStream{r: wire.NewReader(s), w: wire.NewWriter(s)}
	f, err := st.r.Read()
	if err != nil {
		e.log.Debug("stream ended before its header", "err", err)
		return
	}
	var h jumpmeshv1.StreamHeader
	if f.Kind != wire.KindHeader {
		st.close(wire.Errorf(wire.InvalidArgument, "protocol error: want a HEADER frame first, got %v", f.Kind))
		return
	}
	if err := proto.Unmarshal(f.Payload, &h); err != nil {
		st.close(wire.Errorf(wire.InvalidArgument, "protocol error: bad stream header: %v", err))
		return
	}
	// Always read what the client sends while answering: a transport
	// without buffers (net.Pipe) would deadlock otherwise, and reading is
	// how a vanished client is noticed. A byte stream's DATA goes to data.
	data, pw := io.Pipe()
	defer data.Close()
	go st.watchClient(pw, cancel)
	switch op := h.GetOp().(type) {
	case *jumpmeshv1.StreamHeader_Report:
		st.close(st.send(e.report))
	case *jumpmeshv1.StreamHeader_Call:
		e.serveCall(ctx, st, data, op.Call)
	case *jumpmeshv1.StreamHeader_Logs:
		st.close(e.serveLogs(ctx, st, op.Logs))
	default:
		st.close(wire.Errorf(wire.Unimplemented, "this exporter does not know the operation %T; is the client newer than the exporter?", op))
	}
}

// serverStream is the exporter's end of a stream. Writes are serialized so
// that a driver writing late cannot interleave with the final frames.
type serverStream struct {
	r *wire.Reader

	mu     sync.Mutex
	w      *wire.Writer
	closed bool
}

var errStreamClosed = errors.New("stream already closed")

func (st *serverStream) write(k wire.Kind, payload []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errStreamClosed
	}
	return st.w.Write(k, payload)
}

func (st *serverStream) send(m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal %T: %w", m, err)
	}
	return st.write(wire.KindMessage, b)
}

// close ends the exporter's direction with err's status. Nothing can be
// written after it.
func (st *serverStream) close(err error) {
	b, merr := proto.Marshal(wire.StatusOf(err))
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || merr != nil {
		return
	}
	st.closed = true
	st.w.Write(wire.KindClose, b)
}

// watchClient reads what the client still sends: DATA into data, then its
// CLOSE, which ends data with io.EOF. The transport's end after that, or any
// error, means the client has gone, and cancel stops the call.
func (st *serverStream) watchClient(data *io.PipeWriter, cancel context.CancelFunc) {
	defer cancel()
	for {
		f, err := st.r.Read()
		if err != nil {
			data.CloseWithError(&wire.Error{Code: wire.Canceled, Message: "the client went away"})
			return
		}
		switch f.Kind {
		case wire.KindData:
			// Once the driver stops reading, the rest is discarded: the
			// client may still be sending when the call ends.
			data.Write(f.Payload)
		case wire.KindClose:
			data.Close()
			if err := wire.ErrorOf(f.Payload); err != nil {
				return // the client ended its side with an error: stop
			}
		default:
			data.CloseWithError(wire.Errorf(wire.InvalidArgument, "protocol error: unexpected %v frame", f.Kind))
			return
		}
	}
}

func (e *Exporter) serveCall(ctx context.Context, st *serverStream, data *io.PipeReader, req *jumpmeshv1.CallRequest) {
	n, ok := e.byUUID[req.GetDriverUuid()]
	if !ok {
		st.close(wire.Errorf(wire.NotFound, "exporter %s has no driver %s; get the report again", e.Name(), req.GetDriverUuid()))
		return
	}
	iface, ok := n.ifaces[req.GetInterface()]
	if !ok {
		st.close(wire.Errorf(wire.Unimplemented, "driver %s (%s) does not implement %s", n.report.GetName(), n.report.GetType(), req.GetInterface()))
		return
	}
	h, md, ok := iface.Method(req.GetMethod())
	if !ok {
		st.close(wire.Errorf(wire.Unimplemented, "%s has no method %q", req.GetInterface(), req.GetMethod()))
		return
	}
	in := h.NewRequest()
	if err := req.GetArgs().UnmarshalTo(in); err != nil {
		st.close(wire.Errorf(wire.InvalidArgument, "%s takes %s: %v", md.FullName(), md.Input().FullName(), err))
		return
	}
	if t := req.GetTimeout(); t != nil {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, t.AsDuration())
		defer stop()
	}
	log := n.log.With("method", req.GetMethod())
	log.Debug("call")

	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				log.Error("driver panicked", "panic", p, "stack", string(debug.Stack()))
				err = wire.Errorf(wire.Internal, "driver %s panicked in %s: %v", n.report.GetName(), req.GetMethod(), p)
			}
		}()
		err = dispatch(ctx, st, data, h, in)
	}()
	if err != nil && ctx.Err() == nil {
		log.Info("call failed", "err", err)
	}
	st.close(err)
}

func dispatch(ctx context.Context, st *serverStream, data *io.PipeReader, h drivers.Handler, in proto.Message) error {
	switch h.Kind() {
	case jumpmeshv1.MethodKind_METHOD_KIND_UNARY:
		out, err := h.CallUnary(ctx, in)
		if err != nil {
			return err
		}
		return st.send(out)
	case jumpmeshv1.MethodKind_METHOD_KIND_SERVER_STREAM:
		return h.CallStream(ctx, in, st.send)
	case jumpmeshv1.MethodKind_METHOD_KIND_BYTE_STREAM:
		// OPEN goes out when the driver first reads or writes, so that it is
		// ready (a console has joined its device's output) before the client
		// sees the stream open; a driver that fails first answers with
		// nothing but its error.
		open := sync.OnceValue(func() error { return st.write(wire.KindOpen, nil) })
		out, err := h.CallBytes(ctx, in, byteStream{data, st, open})
		data.Close()
		if err != nil {
			return err
		}
		if err := open(); err != nil {
			return err
		}
		return st.send(out)
	}
	return wire.Errorf(wire.Internal, "method kind %v is not served", h.Kind())
}

// byteStream is a driver's end of a byte stream.
type byteStream struct {
	data *io.PipeReader
	st   *serverStream
	open func() error
}

func (b byteStream) Read(p []byte) (int, error) {
	if err := b.open(); err != nil {
		return 0, err
	}
	return b.data.Read(p)
}

func (b byteStream) Write(p []byte) (int, error) {
	if err := b.open(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), wire.DataChunkSize)]
		if err := b.st.write(wire.KindData, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

func (e *Exporter) serveLogs(ctx context.Context, st *serverStream, req *jumpmeshv1.LogStreamRequest) error {
	backlog, ch, cancel := e.logs.subscribe()
	defer cancel()
	min := req.GetMinSeverity()
	for _, entry := range backlog {
		if entry.GetSeverity() >= min {
			if err := st.send(entry); err != nil {
				return err
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case entry, ok := <-ch:
			if !ok {
				return nil
			}
			if entry.GetSeverity() >= min {
				if err := st.send(entry); err != nil {
					return err
				}
			}
		}
	}
}
