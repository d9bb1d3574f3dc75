package client

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// Forward serves l by opening a stream with o for each connection and
// copying both ways, until ctx ends. It is how `jmp shell` gives `j` the
// same Unix socket whether the exporter runs in-process or across the mesh.
// When the exporter's side of a stream ends, or the client closes its
// connection, both are closed: in the session protocol the end of a
// transport means its peer has gone.
func Forward(ctx context.Context, l net.Listener, o Opener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Go(func() { forward(ctx, c, o) })
	}
}

// forward carries one connection of l over a stream of its own. The
// exporter's answer (stream to c) ends the call: when it is all copied,
// both close. The client's side (c to stream) ends it only when the
// client closes c, which means it went away; the exporter may stop
// reading before then (it answers as soon as it has what it needs and
// closes its end), so a write that fails drops the rest of what the
// client sends, and its answer still gets through.
func forward(ctx context.Context, c net.Conn, o Opener) {
	defer c.Close()
	s, err := o.OpenStream(ctx)
	if err != nil {
		return // j sees its socket close and reports the exporter gone
	}
	defer s.Close()
	answered, gone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(answered)
		io.Copy(c, s)
	}()
	go func() {
		defer close(gone)
		if _, err := io.Copy(s, c); err != nil {
			io.Copy(io.Discard, c)
		}
	}()
	select {
	case <-answered:
	case <-gone:
	case <-ctx.Done():
	}
	// Closing both ends the other copy; wait for it before returning.
	c.Close()
	s.Close()
	<-answered
	<-gone
}
