package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/stretchr/testify/require"
)

// oneConn is a listener that hands out one connection, then waits to be
// closed.
type oneConn struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *oneConn) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConn) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConn) Addr() net.Addr { return &net.UnixAddr{Name: "test", Net: "unix"} }

// answerFirst is an exporter's stream that stops reading before the
// client has sent everything (a QUIC STOP_SENDING): writes fail, and its
// answer arrives after the first failed write.
type answerFirst struct {
	answer  string
	refused chan struct{}
	once    sync.Once
	read    bool
}

var errStopped = errors.New("stream stopped by the exporter")

func (s *answerFirst) Write([]byte) (int, error) {
	s.once.Do(func() { close(s.refused) })
	return 0, errStopped
}

func (s *answerFirst) Read(p []byte) (int, error) {
	<-s.refused
	if s.read {
		return 0, io.EOF
	}
	s.read = true
	return copy(p, s.answer), nil
}

func (s *answerFirst) Close() error { return nil }

type openerFunc func(ctx context.Context) (wire.Stream, error)

func (f openerFunc) OpenStream(ctx context.Context) (wire.Stream, error) { return f(ctx) }

// TestForwardAnswerAfterRefusedWrite: an exporter that answers and stops
// reading before the client's last bytes arrive still gets its answer to
// the client.
func TestForwardAnswerAfterRefusedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j, served := net.Pipe()
		l := &oneConn{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
		l.conns <- served
		s := &answerFirst{answer: "the report", refused: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- client.Forward(ctx, l, openerFunc(func(context.Context) (wire.Stream, error) { return s, nil }))
		}()
		_, err := j.Write([]byte("header, close"))
		require.NoError(t, err)
		got, err := io.ReadAll(j)
		require.NoError(t, err)
		require.Equal(t, "the report", string(got))
		j.Close()
		cancel()
		require.NoError(t, <-done)
	})
}
