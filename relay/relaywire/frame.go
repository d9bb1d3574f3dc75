package relaywire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"
)

// FrameKind is a link frame's first byte.
type FrameKind byte

const (
	// FrameControl carries one relayv1.PeerMessage or relayv1.RelayMessage.
	FrameControl FrameKind = 1
	// FrameData carries a relayed packet, TypeData's header included, on
	// links without UDP.
	FrameData FrameKind = 2
	// FramePing asks for a FramePong: liveness on TCP links, which have no
	// QUIC keep-alive.
	FramePing FrameKind = 3
	FramePong FrameKind = 4
)

// MaxFrameSize bounds a frame: a signalling message with a token and a few
// candidates, or a packet, is far smaller.
const MaxFrameSize = 64 << 10

// ErrFrame is returned for bytes that are not a frame.
var ErrFrame = errors.New("malformed relay link frame")

// dataQueue bounds the data frames waiting for a slow link. A full queue
// drops, as a router does: QUIC's congestion control reacts to the loss,
// where a blocking queue would stall every session on the link.
const dataQueue = 256

// Stream carries frames on a reliable byte stream (a TLS connection, or a
// QUIC stream for control only). Control frames queue without limit and go
// first; data frames are dropped when dataQueue is full. One goroutine
// writes; Read must be called from one goroutine at a time.
type Stream struct {
	rw io.ReadWriteCloser
	r  *bufio.Reader
	// rbuf holds the last frame read.
	rbuf []byte

	mu      sync.Mutex
	ctrl    [][]byte
	data    [][]byte
	wake    chan struct{}
	closed  bool
	err     error // why writing stopped
	stopped chan struct{}
}

// NewStream starts the writer for rw. Close stops it.
func NewStream(rw io.ReadWriteCloser) *Stream {
	s := &Stream{
		rw:      rw,
		r:       bufio.NewReaderSize(rw, 64<<10),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	go s.writeLoop()
	return s
}

// SendControl queues a message. It fails once the stream is closed.
func (s *Stream) SendControl(m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal %T: %w", m, err)
	}
	return s.queue(FrameControl, b, true)
}

// SendData queues a relayed packet (header included); false when it was
// dropped.
func (s *Stream) SendData(p []byte) bool { return s.queue(FrameData, p, false) == nil }

// SendPing and SendPong queue liveness frames.
func (s *Stream) SendPing() error { return s.queue(FramePing, nil, true) }
func (s *Stream) SendPong() error { return s.queue(FramePong, nil, true) }

var errQueueFull = errors.New("relay link data queue full")

func (s *Stream) queue(k FrameKind, payload []byte, reliable bool) error {
	f := AppendFrame(make([]byte, 0, len(payload)+1+binary.MaxVarintLen32), k, payload)
	s.mu.Lock()
	switch {
	case s.closed:
		err := s.err
		s.mu.Unlock()
		return err
	case reliable:
		s.ctrl = append(s.ctrl, f)
	case len(s.data) >= dataQueue:
		s.mu.Unlock()
		return errQueueFull
	default:
		s.data = append(s.data, f)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

func (s *Stream) writeLoop() {
	defer close(s.stopped)
	w := bufio.NewWriterSize(s.rw, 64<<10)
	for {
		s.mu.Lock()
		ctrl, data, closed := s.ctrl, s.data, s.closed
		s.ctrl, s.data = nil, nil
		s.mu.Unlock()
		if closed {
			return
		}
		if len(ctrl)+len(data) == 0 {
			<-s.wake
			continue
		}
		for _, f := range append(ctrl, data...) {
			if _, err := w.Write(f); err != nil {
				s.fail(err)
				return
			}
		}
		if err := w.Flush(); err != nil {
			s.fail(err)
			return
		}
	}
}

func (s *Stream) fail(err error) {
	s.mu.Lock()
	if !s.closed {
		s.closed, s.err = true, fmt.Errorf("write relay link: %w", err)
	}
	s.mu.Unlock()
	s.rw.Close()
}

// Read returns the next frame; its payload is valid until the next Read.
func (s *Stream) Read() (FrameKind, []byte, error) {
	kind, err := s.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	k := FrameKind(kind)
	if k < FrameControl || k > FramePong {
		return 0, nil, fmt.Errorf("%w: kind %d", ErrFrame, kind)
	}
	n, err := binary.ReadUvarint(s.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("%w: length: %w", ErrFrame, err)
	}
	if n > MaxFrameSize {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrFrame, n)
	}
	if cap(s.rbuf) < int(n) {
		s.rbuf = make([]byte, n)
	}
	p := s.rbuf[:n]
	if _, err := io.ReadFull(s.r, p); err != nil {
		return 0, nil, unexpected(err)
	}
	return k, p, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadControl reads frames until a control frame and unmarshals it into m,
// answering pings on the way; other frames are an error.
func (s *Stream) ReadControl(m proto.Message) error {
	for {
		k, p, err := s.Read()
		if err != nil {
			return err
		}
		switch k {
		case FrameControl:
			if err := proto.Unmarshal(p, m); err != nil {
				return fmt.Errorf("%w: %w", ErrFrame, err)
			}
			return nil
		case FramePing:
			s.SendPong()
		case FramePong:
		default:
			return fmt.Errorf("%w: %v frame on a control stream", ErrFrame, k)
		}
	}
}

// Close stops the writer, dropping what is queued, and closes the stream.
func (s *Stream) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed, s.err = true, errors.New("relay link closed")
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	err := s.rw.Close()
	<-s.stopped
	return err
}

// AppendFrame appends a frame.
func AppendFrame(b []byte, k FrameKind, payload []byte) []byte {
	b = append(b, byte(k))
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}
