package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

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

// readBufferSize is small: a stream is opened per call, and most carry a
// header and one short message, which fit it and are read in place; a
// larger buffer would be garbage on every call. A frame bigger than it is
// read into a buffer of its own.
const readBufferSize = 512

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
	r   bufio.Reader // by value: a Reader is one allocation, not two
	buf []byte
}

// NewReader returns a Reader that buffers r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: *bufio.NewReaderSize(r, readBufferSize)}
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
	n, err := binary.ReadUvarint(&r.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read %v frame length: %w", k, err)
	}
	if n > MaxFrameSize {
		return Frame{}, fmt.Errorf("%v frame of %d bytes: %w (limit %d)", k, n, ErrFrameTooLarge, MaxFrameSize)
	}
	p, err := r.payload(int(n))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read %v frame: %w", k, err)
	}
	return Frame{Kind: k, Payload: p}, nil
}

// payload reads the next n bytes. A payload that fits the read buffer is
// returned in place, without a copy: it stays there until the next read.
func (r *Reader) payload(n int) ([]byte, error) {
	if n <= r.r.Size() {
		p, err := r.r.Peek(n)
		if err != nil {
			return nil, err
		}
		r.r.Discard(n)
		return p, nil
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	p := r.buf[:n]
	_, err := io.ReadFull(&r.r, p)
	return p, err
}

// Writer writes frames to a stream. Write and WriteMessage send a frame at
// once; AddMessage and AddClose hold one back until the next write or
// Flush, so that frames that belong together (a request and the CLOSE
// ending it, a response and its CLOSE) share one write to the stream: on
// QUIC, one packet.
type Writer struct {
	w   io.Writer
	buf []byte // the frames held back
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write sends a frame, after the frames held back.
func (w *Writer) Write(k Kind, payload []byte) error {
	if len(payload) > MaxFrameSize {
		return fmt.Errorf("write %v frame of %d bytes: %w", k, len(payload), ErrFrameTooLarge)
	}
	w.buf = append(w.buf, byte(k))
	w.buf = binary.AppendUvarint(w.buf, uint64(len(payload)))
	w.buf = append(w.buf, payload...)
	return w.Flush()
}

// WriteMessage sends m in a frame of kind k, after the frames held back.
func (w *Writer) WriteMessage(k Kind, m proto.Message) error {
	if err := w.AddMessage(k, m); err != nil {
		return err
	}
	return w.Flush()
}

// AddMessage holds m, in a frame of kind k, back for the next write.
func (w *Writer) AddMessage(k Kind, m proto.Message) error {
	n := proto.Size(m)
	if n > MaxFrameSize {
		return fmt.Errorf("write %v frame of %d bytes: %w", k, n, ErrFrameTooLarge)
	}
	start := len(w.buf)
	w.buf = slices.Grow(w.buf, 1+binary.MaxVarintLen64+n)
	w.buf = append(w.buf, byte(k))
	w.buf = binary.AppendUvarint(w.buf, uint64(n))
	// Size has just measured m: marshal it without measuring it again.
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(w.buf, m)
	if err != nil {
		w.buf = w.buf[:start]
		return fmt.Errorf("marshal %T: %w", m, err)
	}
	w.buf = b
	return nil
}

// AddClose holds back the CLOSE frame that ends a direction with err's
// status, CODE_OK for nil.
func (w *Writer) AddClose(err error) error {
	if err == nil {
		// CODE_OK is the zero Status, which encodes to nothing.
		w.buf = append(w.buf, byte(KindClose), 0)
		return nil
	}
	return w.AddMessage(KindClose, StatusOf(err))
}

// Flush sends the frames held back.
func (w *Writer) Flush() error {
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Stream is one bidirectional byte stream: a Unix socket connection or a
// QUIC stream. The end of a direction is a CLOSE frame, not a transport
// half-close: the transport's end of file means the peer has gone, which is
// how an exporter notices a client that vanished mid-call.
type Stream = io.ReadWriteCloser
