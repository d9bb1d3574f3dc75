package exporter_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/exporter"
	powerv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/power/v1"
	serialv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/serial/v1"
	"github.com/stretchr/testify/require"
)

// sink is a device whose console swallows everything, to measure the
// protocol and not a driver.
type sink struct{}

func (sink) Close() error { return nil }
func (sink) Interfaces() []drivers.Interface {
	return []drivers.Interface{{
		Service: serialv1.File_jumpmesh_drivers_serial_v1_serial_proto.Services().ByName("Serial"),
		Handlers: map[protoreflectName]drivers.Handler{
			"Console": drivers.Bytes(func(_ context.Context, _ *serialv1.ConsoleRequest, s drivers.ByteStream) (*serialv1.ConsoleResponse, error) {
				_, err := io.Copy(io.Discard, s)
				return &serialv1.ConsoleResponse{}, err
			}),
		},
	}}
}

func init() {
	drivers.Register(drivers.Type{Name: "test.sink", Description: "swallows console input",
		New: func(*drivers.Build) (drivers.Driver, error) { return sink{}, nil }})
}

// serveUnix runs the exporter of config on a Unix socket, as `jmp shell`
// does, and returns the socket's path.
func serveUnix(b *testing.B, config string) string {
	dir, err := os.MkdirTemp("", "jmb")
	require.NoError(b, err)
	b.Cleanup(func() { os.RemoveAll(dir) })
	file := filepath.Join(dir, "e.yaml")
	require.NoError(b, os.WriteFile(file, []byte(config), 0o600))
	cfg, err := exporter.Load(file)
	require.NoError(b, err)
	e, err := exporter.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(b, err)
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.ServeListener(ctx, l) }()
	b.Cleanup(func() { cancel(); <-done; e.Close() })
	return sock
}

// echoServer answers each connection by copying it back: the baseline of
// a bare Unix socket.
func echoServer(b *testing.B) string {
	dir, err := os.MkdirTemp("", "jmb")
	require.NoError(b, err)
	b.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "echo")
	l, err := net.Listen("unix", sock)
	require.NoError(b, err)
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return sock
}

// BenchmarkCallRoundTrip measures a unary driver call as `j` makes it: a
// new connection per call, header, response. Baselines in the same run:
// a 64-byte ping-pong on one open socket, and one on a fresh connection.
func BenchmarkCallRoundTrip(b *testing.B) {
	b.Run("baseline=ping-pong", func(b *testing.B) {
		c, err := net.Dial("unix", echoServer(b))
		require.NoError(b, err)
		defer c.Close()
		buf := make([]byte, 64)
		for b.Loop() {
			c.Write(buf)
			io.ReadFull(c, buf)
		}
	})
	b.Run("baseline=connect+ping-pong", func(b *testing.B) {
		sock := echoServer(b)
		buf := make([]byte, 64)
		for b.Loop() {
			c, err := net.Dial("unix", sock)
			require.NoError(b, err)
			c.Write(buf)
			io.ReadFull(c, buf)
			c.Close()
		}
	})
	b.Run("driver-call", func(b *testing.B) {
		s, err := client.Dial(serveUnix(b, config))
		require.NoError(b, err)
		d, err := s.Driver(b.Context(), "dut.fake")
		require.NoError(b, err)
		for b.Loop() {
			require.NoError(b, d.Call(b.Context(), powerIface, "On", &powerv1.OnRequest{}, &powerv1.OnResponse{}))
		}
	})
}

// BenchmarkByteStream measures console throughput from client to driver,
// against a bare io.Copy over a Unix socket in the same run.
func BenchmarkByteStream(b *testing.B) {
	const chunk = 256 << 10
	payload := make([]byte, chunk)
	b.Run("baseline=unix-socket", func(b *testing.B) {
		dir, err := os.MkdirTemp("", "jmb")
		require.NoError(b, err)
		defer os.RemoveAll(dir)
		l, err := net.Listen("unix", filepath.Join(dir, "s"))
		require.NoError(b, err)
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err == nil {
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		c, err := net.Dial("unix", filepath.Join(dir, "s"))
		require.NoError(b, err)
		defer c.Close()
		b.SetBytes(chunk)
		for b.Loop() {
			c.Write(payload)
		}
	})
	b.Run("console-stream", func(b *testing.B) {
		s, err := client.Dial(serveUnix(b, "apiVersion: jumpmesh.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {name: bench}\nexport:\n  sink: {type: test.sink}\n"))
		require.NoError(b, err)
		d, err := s.Driver(b.Context(), "sink")
		require.NoError(b, err)
		bs, err := d.OpenBytes(b.Context(), serialIface, "Console", &serialv1.ConsoleRequest{})
		require.NoError(b, err)
		b.SetBytes(chunk)
		for b.Loop() {
			bs.Write(payload)
		}
		require.NoError(b, bs.Wait(&serialv1.ConsoleResponse{}))
	})
}
