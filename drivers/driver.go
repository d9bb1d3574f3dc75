package drivers

import (
	"context"
	"fmt"
	"io"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Driver is one node of an exporter's driver tree.
type Driver interface {
	// Interfaces are the services the driver serves; none for a driver that
	// only groups its children.
	Interfaces() []Interface
	// Close releases the device. The exporter calls it once, children
	// before parents, when it stops.
	Close() error
}

// Interface binds one protobuf service to a driver's handlers.
type Interface struct {
	Service  protoreflect.ServiceDescriptor
	Handlers map[protoreflect.Name]Handler
}

// Method returns the handler and descriptor of the named method.
func (i Interface) Method(name string) (Handler, protoreflect.MethodDescriptor, bool) {
	md := i.Service.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return Handler{}, nil, false
	}
	h, ok := i.Handlers[md.Name()]
	return h, md, ok
}

// Validate checks that every method of the service has a handler of the
// right kind and types, so a mistake shows at start-up, not at the first call.
func (i Interface) Validate() error {
	methods := i.Service.Methods()
	for j := range methods.Len() {
		md := methods.Get(j)
		h, ok := i.Handlers[md.Name()]
		if !ok {
			return fmt.Errorf("%s: no handler", md.FullName())
		}
		if want := KindOf(md); h.kind != want {
			return fmt.Errorf("%s: handler is %v, method is %v", md.FullName(), h.kind, want)
		}
		if got, want := h.req.Descriptor().FullName(), md.Input().FullName(); got != want {
			return fmt.Errorf("%s: handler takes %s, method takes %s", md.FullName(), got, want)
		}
		if got, want := h.resp.Descriptor().FullName(), md.Output().FullName(); got != want {
			return fmt.Errorf("%s: handler returns %s, method returns %s", md.FullName(), got, want)
		}
	}
	if len(i.Handlers) != methods.Len() {
		return fmt.Errorf("%s: %d handlers for %d methods", i.Service.FullName(), len(i.Handlers), methods.Len())
	}
	return nil
}

// KindOf says how a method is called: a byte stream when it carries the
// byte_stream option, server streaming when its response is a stream.
func KindOf(md protoreflect.MethodDescriptor) jumpmeshv1.MethodKind {
	switch {
	case proto.GetExtension(md.Options(), jumpmeshv1.E_ByteStream).(bool):
		return jumpmeshv1.MethodKind_METHOD_KIND_BYTE_STREAM
	case md.IsStreamingServer():
		return jumpmeshv1.MethodKind_METHOD_KIND_SERVER_STREAM
	}
	return jumpmeshv1.MethodKind_METHOD_KIND_UNARY
}

// MethodDescription is the help text a method's proto options give it.
func MethodDescription(sd protoreflect.ServiceDescriptor, method string) string {
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return ""
	}
	return proto.GetExtension(md.Options(), jumpmeshv1.E_MethodDescription).(string)
}

// ByteStream is a driver's end of a byte stream.
type ByteStream interface {
	// Read returns the client's bytes, then io.EOF when the client is done
	// sending.
	io.Reader
	// Write sends bytes to the client.
	io.Writer
}

// Handler serves one method. Build it with Unary, ServerStream or Bytes.
type Handler struct {
	kind   jumpmeshv1.MethodKind
	req    protoreflect.MessageType
	resp   protoreflect.MessageType
	unary  func(context.Context, proto.Message) (proto.Message, error)
	stream func(context.Context, proto.Message, func(proto.Message) error) error
	bytes  func(context.Context, proto.Message, ByteStream) (proto.Message, error)
}

// Kind says how the handler is called.
func (h Handler) Kind() jumpmeshv1.MethodKind { return h.kind }

// NewRequest returns an empty request message to decode into.
func (h Handler) NewRequest() proto.Message { return h.req.New().Interface() }

// CallUnary serves a unary call.
func (h Handler) CallUnary(ctx context.Context, req proto.Message) (proto.Message, error) {
	return h.unary(ctx, req)
}

// CallStream serves a server-streaming call; send delivers each response.
func (h Handler) CallStream(ctx context.Context, req proto.Message, send func(proto.Message) error) error {
	return h.stream(ctx, req, send)
}

// CallBytes serves a byte-stream call; the response is sent when it ends.
func (h Handler) CallBytes(ctx context.Context, req proto.Message, s ByteStream) (proto.Message, error) {
	return h.bytes(ctx, req, s)
}

func messageType[M proto.Message]() protoreflect.MessageType {
	var zero M
	return zero.ProtoReflect().Type()
}

// Unary makes a Handler of a unary method.
func Unary[Req, Resp proto.Message](fn func(context.Context, Req) (Resp, error)) Handler {
	return Handler{
		kind: jumpmeshv1.MethodKind_METHOD_KIND_UNARY,
		req:  messageType[Req](),
		resp: messageType[Resp](),
		unary: func(ctx context.Context, req proto.Message) (proto.Message, error) {
			return fn(ctx, req.(Req))
		},
	}
}

// ServerStream makes a Handler of a server-streaming method.
func ServerStream[Req, Resp proto.Message](fn func(context.Context, Req, func(Resp) error) error) Handler {
	return Handler{
		kind: jumpmeshv1.MethodKind_METHOD_KIND_SERVER_STREAM,
		req:  messageType[Req](),
		resp: messageType[Resp](),
		stream: func(ctx context.Context, req proto.Message, send func(proto.Message) error) error {
			return fn(ctx, req.(Req), func(r Resp) error { return send(r) })
		},
	}
}

// Bytes makes a Handler of a byte-stream method.
func Bytes[Req, Resp proto.Message](fn func(context.Context, Req, ByteStream) (Resp, error)) Handler {
	return Handler{
		kind: jumpmeshv1.MethodKind_METHOD_KIND_BYTE_STREAM,
		req:  messageType[Req](),
		resp: messageType[Resp](),
		bytes: func(ctx context.Context, req proto.Message, s ByteStream) (proto.Message, error) {
			return fn(ctx, req.(Req), s)
		},
	}
}
