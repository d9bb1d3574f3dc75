// Package exportertest runs an exporter in-process for tests: built from an
// ExporterConfig, served over in-memory streams, and torn down when the
// test ends. It works inside testing/synctest bubbles.
package exportertest

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/exporter"
	"github.com/jumpmesh/jumpmesh/proto/wire"
)

// Harness is a running in-process exporter and a client session to it.
type Harness struct {
	Exporter *exporter.Exporter
	Session  *client.Session
	// Dir holds the config file; relative paths in it resolve here.
	Dir string
}

// Session starts an exporter from configYAML and returns a session to it.
func Session(t testing.TB, configYAML string) *client.Session {
	return Start(t, configYAML).Session
}

// Start builds an exporter from configYAML (written to a file in a fresh
// temporary folder, so relative paths land there) and serves it until the
// test ends, when its drivers are closed. A config that does not build
// fails the test.
func Start(t testing.TB, configYAML string) *Harness {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "exporter.yaml")
	if err := os.WriteFile(file, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := exporter.Load(file)
	if err != nil {
		t.Fatalf("load exporter config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := exporter.New(cfg, log)
	if err != nil {
		t.Fatalf("build exporter: %v", err)
	}
	pipe := NewPipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Serve(ctx, pipe)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := e.Close(); err != nil {
			t.Errorf("close exporter: %v", err)
		}
	})
	return &Harness{Exporter: e, Session: client.New(pipe), Dir: dir}
}

// Pipe is an in-memory transport: each OpenStream makes a net.Pipe whose
// far end the next AcceptStream returns.
type Pipe struct{ conns chan net.Conn }

// NewPipe returns an in-memory transport.
func NewPipe() *Pipe { return &Pipe{conns: make(chan net.Conn)} }

// OpenStream hands a new stream to the acceptor.
func (p *Pipe) OpenStream(ctx context.Context) (wire.Stream, error) {
	near, far := net.Pipe()
	select {
	case p.conns <- far:
		return near, nil
	case <-ctx.Done():
		near.Close()
		far.Close()
		return nil, ctx.Err()
	}
}

// AcceptStream returns the next opened stream.
func (p *Pipe) AcceptStream(ctx context.Context) (wire.Stream, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// testWriter sends the exporter's log to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
