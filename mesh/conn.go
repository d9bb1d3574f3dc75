package mesh

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/udpmux"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/quic-go/quic-go"
)

// Conn is one session between a client and an exporter. Each driver call
// and byte stream is its own QUIC stream (OpenStream on the client,
// AcceptStream on the exporter), so a stalled console never blocks a power
// call. Under it, the QUIC connection moves between the relay and a direct
// path without the streams noticing; it is replaced only when the far side
// restarts. It is safe for concurrent use.
type Conn struct {
	// followRemote, on an exporter, reads the path off the connection's
	// peer address, which the client moves: path is then the path it has
	// when relayed.
	followRemote bool
	// stop asks the session's loop to close it.
	stop func()

	// gone is closed when everything the session held is released.
	gone chan struct{}

	// accepted, on an exporter, carries the streams of all the session's
	// connections to AcceptStream: the client uses one, but which one
	// the exporter cannot know before its first stream (a connection
	// that lost the client's race may not be closed for a while).
	accepted chan *quic.Stream

	mu      sync.Mutex
	qc      *quic.Conn
	path    Path
	changed chan struct{} // closed and replaced when qc or path change
	done    chan struct{}
	err     error
}

func newConn(stop func()) *Conn {
	return &Conn{stop: stop, changed: make(chan struct{}), done: make(chan struct{}), gone: make(chan struct{})}
}

// set makes qc the connection, on path.
func (c *Conn) set(qc *quic.Conn, path Path) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.qc == qc && c.path == path {
		return
	}
	c.qc, c.path = qc, path
	close(c.changed)
	c.changed = make(chan struct{})
}

// finish ends the session with err.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	c.err = err
	c.qc, c.path = nil, PathNone
	close(c.done)
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Conn) state() (*quic.Conn, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.qc, c.changed
}

// OpenStream opens a stream to the exporter, waiting while the session
// has no connection (the exporter restarting, say) until ctx ends.
func (c *Conn) OpenStream(ctx context.Context) (wire.Stream, error) {
	for {
		qc, changed := c.state()
		if err := c.Err(); err != nil {
			return nil, err
		}
		if qc != nil {
			s, err := qc.OpenStreamSync(ctx)
			if err == nil {
				return &stream{Stream: s, c: c}, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// The connection failed; its session moves on to the next.
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// AcceptStream returns the next stream the client opens, on any of the
// session's connections. It fails once the session ends.
func (c *Conn) AcceptStream(ctx context.Context) (wire.Stream, error) {
	select {
	case s := <-c.accepted:
		return &stream{Stream: s, c: c}, nil
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Path is the way the session's packets go now.
func (c *Conn) Path() Path {
	p, _ := c.Watch()
	return p
}

// Watch returns the path and a channel closed at the next change. On an
// exporter, where the client moves the connection, Path follows a move at
// once but Watch's channel fires only when the connection is replaced.
func (c *Conn) Watch() (Path, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.followRemote && c.qc != nil && !udpmux.IsVirtual(c.qc.RemoteAddr()) {
		return PathDirect, c.changed
	}
	return c.path, c.changed
}

// unmeasuredRTT is the smoothed RTT quic-go reports before a path's first
// sample: its initial guess, which a path move returns to.
const unmeasuredRTT = 100 * time.Millisecond

// RTT is the smoothed round-trip time of the connection's path; 0 without
// a sample yet (a moment after a move).
func (c *Conn) RTT() time.Duration {
	qc, _ := c.state()
	if qc == nil {
		return 0
	}
	st := qc.ConnectionStats()
	if st.MeanDeviation == 0 && st.SmoothedRTT == unmeasuredRTT {
		// A sample sets the deviation to half of itself: this is
		// the guess, not a measurement.
		return 0
	}
	return st.SmoothedRTT
}

// Done is closed when the session ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the session ended, nil while it lives.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the session: the far side's streams end with ErrSessionEnded,
// this side's with ErrSessionClosed.
func (c *Conn) Close() error {
	c.stop()
	<-c.gone
	return nil
}

// streamErr turns a stream's error into the session's reason.
func (c *Conn) streamErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	if serr := c.Err(); serr != nil {
		return serr
	}
	return closeError(err)
}

// stream is a QUIC stream as a wire.Stream.
type stream struct {
	*quic.Stream
	c *Conn
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	return n, s.c.streamErr(err)
}

func (s *stream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	return n, s.c.streamErr(err)
}

// Close ends both directions: to the session protocol, the end of a
// stream means the other side went away, whichever way it was reading.
func (s *stream) Close() error {
	s.Stream.CancelRead(0)
	return s.Stream.Close()
}
