package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	var w workers
	defer w.stop()
	for {
		s, err := a.AcceptStream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept stream: %w", err)
		}
		w.Go(func() { e.serveStream(ctx, s, &w) })
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
	e.serveStream(ctx, s, nil)
}

// serveStream answers s, starting its goroutines on w (nil: their own).
func (e *Exporter) serveStream(ctx context.Context, s wire.Stream, w *workers) {
	defer s.Close()
	// The exporter stopping unblocks every read and write on the stream.
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	st := &serverStream{r: wire.NewReader(s), w: wire.NewWriter(s), workers: w, cancel: cancel}
	f, err := st.r.Read()
	if err != nil {
		e.log.Debug("stream ended before its header", "err", err)
		return
	}
	var h jumpmeshv1.StreamHeader
	if f.Kind != wire.KindHeader {
		st.close(nil, wire.Errorf(wire.InvalidArgument, "protocol error: want a HEADER frame first, got %v", f.Kind))
		return
	}
	if err := proto.Unmarshal(f.Payload, &h); err != nil {
		st.close(nil, wire.Errorf(wire.InvalidArgument, "protocol error: bad stream header: %v", err))
		return
	}
	switch op := h.GetOp().(type) {
	case *jumpmeshv1.StreamHeader_Report:
		st.watch(nil)
		st.close(e.report, nil)
	case *jumpmeshv1.StreamHeader_Call:
		e.serveCall(ctx, st, op.Call)
	case *jumpmeshv1.StreamHeader_Logs:
		st.watch(nil)
		st.close(nil, e.serveLogs(ctx, st, op.Logs))
	default:
		st.watch(nil)
		st.close(nil, wire.Errorf(wire.Unimplemented, "this exporter does not know the operation %T; is the client newer than the exporter?", op))
	}
}

// serverStream is the exporter's end of a stream. Writes are serialized so
// that a driver writing late cannot interleave with the final frames.
type serverStream struct {
	r       *wire.Reader
	workers *workers           // where the watch on the client runs
	cancel  context.CancelFunc // ends the call

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
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errStreamClosed
	}
	return st.w.WriteMessage(wire.KindMessage, m)
}

// close ends the exporter's direction with err's status, after last (the
// response; nil for none) when err is nil. It is one write: a unary call's
// answer is one packet on QUIC. Nothing can be written after it.
func (st *serverStream) close(last proto.Message, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	st.closed = true
	if err == nil && last != nil {
		err = st.w.AddMessage(wire.KindMessage, last)
	}
	if st.w.AddClose(err) == nil {
		st.w.Flush()
	}
}

// watch starts reading what the client still sends, which must begin
// before the first frame goes out: a transport without buffers (net.Pipe)
// would deadlock otherwise, and reading is how a vanished client is
// noticed. A byte stream's DATA goes to data; other streams have none.
func (st *serverStream) watch(data *io.PipeWriter) {
	st.workers.Go(func() { st.watchClient(data) })
}

var errClientGone = &wire.Error{Code: wire.Canceled, Message: "the client went away"}

// watchClient reads what the client still sends: DATA into data (nil
// discards it), then its CLOSE, which ends data with io.EOF. The
// transport's end after that, or any error, means the client has gone,
// and the call is cancelled.
func (st *serverStream) watchClient(data *io.PipeWriter) {
	defer st.cancel()
	// end ends data, if there is one; a nil err is io.EOF.
	end := func(err error) {
		if data != nil {
			data.CloseWithError(err)
		}
	}
	for {
		f, err := st.r.Read()
		if err != nil {
			end(errClientGone)
			return
		}
		switch f.Kind {
		case wire.KindData:
			// Once the driver stops reading, the rest is discarded: the
			// client may still be sending when the call ends.
			if data != nil {
				data.Write(f.Payload)
			}
		case wire.KindClose:
			end(nil)
			if err := wire.ErrorOf(f.Payload); err != nil {
				return // the client ended its side with an error: stop
			}
		default:
			end(wire.Errorf(wire.InvalidArgument, "protocol error: unexpected %v frame", f.Kind))
			return
		}
	}
}

// target is the driver method a call runs, with its decoded request.
type target struct {
	node   *node
	method string
	h      drivers.Handler
	in     proto.Message
}

// resolve finds the method req calls and decodes its request.
func (e *Exporter) resolve(req *jumpmeshv1.CallRequest) (target, error) {
	n, ok := e.byUUID[req.GetDriverUuid()]
	if !ok {
		return target{}, wire.Errorf(wire.NotFound, "exporter %s has no driver %s; get the report again", e.Name(), req.GetDriverUuid())
	}
	iface, ok := n.ifaces[req.GetInterface()]
	if !ok {
		return target{}, wire.Errorf(wire.Unimplemented, "driver %s (%s) does not implement %s", n.report.GetName(), n.report.GetType(), req.GetInterface())
	}
	h, md, ok := iface.Method(req.GetMethod())
	if !ok {
		return target{}, wire.Errorf(wire.Unimplemented, "%s has no method %q", req.GetInterface(), req.GetMethod())
	}
	in := h.NewRequest()
	if err := req.GetArgs().UnmarshalTo(in); err != nil {
		return target{}, wire.Errorf(wire.InvalidArgument, "%s takes %s: %v", md.FullName(), md.Input().FullName(), err)
	}
	return target{node: n, method: req.GetMethod(), h: h, in: in}, nil
}

func (e *Exporter) serveCall(ctx context.Context, st *serverStream, req *jumpmeshv1.CallRequest) {
	tgt, err := e.resolve(req)
	var (
		data *io.PipeReader
		pw   *io.PipeWriter
	)
	if err == nil && tgt.h.Kind() == jumpmeshv1.MethodKind_METHOD_KIND_BYTE_STREAM {
		data, pw = io.Pipe()
		defer data.Close()
	}
	st.watch(pw)
	if err != nil {
		st.close(nil, err)
		return
	}
	if d := req.GetTimeout(); d != nil {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, d.AsDuration())
		defer stop()
	}
	// Attrs, unlike key-value pairs, cost nothing while the entry goes
	// nowhere, as it does on every call unless a log stream takes debug.
	tgt.node.log.LogAttrs(ctx, slog.LevelDebug, "call", slog.String("method", tgt.method))
	out, err := dispatch(ctx, st, data, tgt)
	if err != nil && ctx.Err() == nil {
		tgt.node.log.Info("call failed", "method", tgt.method, "err", err)
	}
	st.close(out, err)
}

// dispatch runs the call and returns its last response, which goes out
// with the CLOSE. A driver that panics fails the call.
func dispatch(ctx context.Context, st *serverStream, data *io.PipeReader, tgt target) (out proto.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			tgt.node.log.Error("driver panicked", "method", tgt.method, "panic", p, "stack", string(debug.Stack()))
			out, err = nil, wire.Errorf(wire.Internal, "driver %s panicked in %s: %v", tgt.node.report.GetName(), tgt.method, p)
		}
	}()
	h, in := tgt.h, tgt.in
	switch h.Kind() {
	case jumpmeshv1.MethodKind_METHOD_KIND_UNARY:
		return h.CallUnary(ctx, in)
	case jumpmeshv1.MethodKind_METHOD_KIND_SERVER_STREAM:
		return nil, h.CallStream(ctx, in, st.send)
	case jumpmeshv1.MethodKind_METHOD_KIND_BYTE_STREAM:
		// OPEN goes out when the driver first reads or writes, so that it is
		// ready (a console has joined its device's output) before the client
		// sees the stream open; a driver that fails first answers with
		// nothing but its error.
		open := sync.OnceValue(func() error { return st.write(wire.KindOpen, nil) })
		out, err := h.CallBytes(ctx, in, byteStream{data, st, open})
		data.Close()
		if err != nil {
			return nil, err
		}
		if err := open(); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, wire.Errorf(wire.Internal, "method kind %v is not served", h.Kind())
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
	backlog, ch, cancel := e.logs.subscribe(req.GetMinSeverity())
	defer cancel()
	for _, entry := range backlog {
		if err := st.send(entry); err != nil {
			return err
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
			if err := st.send(entry); err != nil {
				return err
			}
		}
	}
}
