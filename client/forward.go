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
// When either side ends, both are closed: in the session protocol the end
// of a transport means its peer has gone.
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

func forward(ctx context.Context, c net.Conn, o Opener) {
	defer c.Close()
	s, err := o.OpenStream(ctx)
	if err != nil {
		return // j sees its socket close and reports the exporter gone
	}
	defer s.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(s, c); done <- struct{}{} }()
	go func() { io.Copy(c, s); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Closing both ends the other copy; wait for it before returning.
	c.Close()
	s.Close()
	<-done
}
