package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// Kind is a frame's type, its first byte on the wire.
type Kind byte

const (
	KindHeader  Kind = 1 // the client's first frame: a StreamHeader
	KindMessage Kind = 2 // a protobuf message
	KindOpen    Kind = 3 // a byte stream was accepted; no payload
	KindData    Kind = 4 // raw bytes of a byte stream
	KindClose   Kind = 5 // this direction is done: a Status
)

func (k Kind) String() string {
	switch k {
	case KindHeader:
		return "HEADER"
	case KindMessage:
		return "MESSAGE"
	case KindOpen:
		return "OPEN"
	case KindData:
		return "DATA"
	case KindClose:
		return "CLOSE"
	}
	return fmt.Sprintf("Kind(%d)", byte(k))
}

// MaxFrameSize bounds a frame's payload so that a broken or hostile peer
// cannot make the other side allocate without limit. 4 MiB holds any report
// or message a driver sends; byte streams send DataChunkSize at a time.
const MaxFrameSize = 4 << 20

// DataChunkSize is how much a byte stream puts in one DATA frame: large
// enough that the 1 to 4 bytes of framing vanish, small enough to interleave
// with other streams on a shared connection without latency spikes.
const DataChunkSize = 32 << 10

// readBufferSize is small: most streams carry a header and one short
// message, and a stream is opened per call, so a large buffer would be
// garbage on every call. DATA frames bigger than it bypass the buffer.
const readBufferSize = 4 << 10

// ErrFrameTooLarge is returned for a frame over MaxFrameSize.
var ErrFrameTooLarge = errors.New("frame too large")

// ErrMalformed is returned for bytes that are not a frame.
var ErrMalformed = errors.New("malformed frame")

// Frame is one decoded frame. Payload is only valid until the next read.
type Frame struct {
	Kind    Kind
	Payload []byte
}

// Reader reads frames from a stream.
type Reader struct {
	r   *bufio.Reader
	buf []byte
}

// NewReader returns a Reader that buffers r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, readBufferSize)}
}

// Read returns the next frame. At a clean end of the stream between frames
// it returns io.EOF; a stream that ends inside a frame gives
// io.ErrUnexpectedEOF.
func (r *Reader) Read() (Frame, error) {
	kind, err := r.r.ReadByte()
	if err != nil {
		return Frame{}, err
	}
	k := Kind(kind)
	if k < KindHeader || k > KindClose {
		return Frame{}, fmt.Errorf("%w: unknown kind %d", ErrMalformed, kind)
	}
	n, err := binary.ReadUvarint(r.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read %v frame length: %w", k, err)
	}
	if n > MaxFrameSize {
		return Frame{}, fmt.Errorf("%v frame of %d bytes: %w (limit %d)", k, n, ErrFrameTooLarge, MaxFrameSize)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	p := r.buf[:n]
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read %v frame: %w", k, err)
	}
	return Frame{Kind: k, Payload: p}, nil
}

// Writer writes frames to a stream. Each frame goes out in one Write call,
// so a frame never waits in a buffer.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write sends one frame.
func (w *Writer) Write(k Kind, payload []byte) error {
	if len(payload) > MaxFrameSize {
		return fmt.Errorf("write %v frame of %d bytes: %w", k, len(payload), ErrFrameTooLarge)
	}
	w.buf = append(w.buf[:0], byte(k))
	w.buf = binary.AppendUvarint(w.buf, uint64(len(payload)))
	w.buf = append(w.buf, payload...)
	_, err := w.w.Write(w.buf)
	return err
}

// WriteMessage sends m in a frame of kind k.
func (w *Writer) WriteMessage(k Kind, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal %T: %w", m, err)
	}
	return w.Write(k, b)
}

// Stream is one bidirectional byte stream: a Unix socket connection or a
// QUIC stream. The end of a direction is a CLOSE frame, not a transport
// half-close: the transport's end of file means the peer has gone, which is
// how an exporter notices a client that vanished mid-call.
type Stream = io.ReadWriteCloser
