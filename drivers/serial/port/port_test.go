package port

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/creack/pty"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/serial"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func build(t *testing.T, configYAML string) (drivers.Driver, error) {
	t.Helper()
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(configYAML), &doc))
	typ, ok := drivers.Lookup("serial")
	require.True(t, ok, "the serial type registers itself")
	return typ.New(&drivers.Build{
		Name: "serial", Path: "serial", Exporter: "test",
		File: "bench.yaml", Dir: t.TempDir(), Log: slog.New(slog.DiscardHandler),
		Config: doc.Content[0], Shared: &drivers.Shared{},
	})
}

// openPTY returns a pseudo-terminal: the driver opens its tty end as the
// port; the test plays the device on the other.
func openPTY(t *testing.T) (device io.ReadWriteCloser, port string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return ptmx, tty.Name()
}

// stream is the driver's end of a console call.
type stream struct {
	io.Reader // what the client types
	io.Writer // what the client sees
}

func console(t *testing.T, d drivers.Driver) (typed *io.PipeWriter, seen *io.PipeReader, done chan error) {
	t.Helper()
	h, _, ok := d.Interfaces()[0].Method("Console")
	require.True(t, ok)
	in, typed := io.Pipe()
	seen, out := io.Pipe()
	done = make(chan error, 1)
	go func() {
		_, err := h.CallBytes(context.Background(), h.NewRequest(), stream{in, out})
		out.CloseWithError(err)
		in.Close()
		done <- err
	}()
	return typed, seen, done
}

func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	require.NoError(t, err)
	return string(b)
}

func TestPortConsole(t *testing.T) {
	device, port := openPTY(t)
	d, err := build(t, "port: "+port+"\nbaudRate: 9600\nparity: even\nstopBits: 2\ndataBits: 7\nflowControl: none")
	require.NoError(t, err)
	require.NoError(t, d.Interfaces()[0].Validate())

	typed, seen, done := console(t, d)
	// The console is attached once its input reaches the device.
	_, err = io.WriteString(typed, "root\n")
	require.NoError(t, err)
	require.Equal(t, "root\n", readN(t, device, 5))

	_, err = io.WriteString(device, "login: ")
	require.NoError(t, err)
	require.Equal(t, "login: ", readN(t, seen, 7))

	require.NoError(t, d.Close())
	require.ErrorIs(t, <-done, serial.ErrHubClosed, "closing the driver ends its consoles")
	require.NoError(t, d.Close(), "closing twice is harmless")
}

func TestPortFails(t *testing.T) {
	device, port := openPTY(t)
	d, err := build(t, "port: "+port)
	require.NoError(t, err)
	defer d.Close()
	typed, _, done := console(t, d)
	_, err = io.WriteString(typed, "x")
	require.NoError(t, err)
	require.Equal(t, "x", readN(t, device, 1))

	device.Close() // the adapter is unplugged
	err = <-done
	require.ErrorContains(t, err, "serial port "+port+" failed")
	require.ErrorContains(t, err, "check its cable")
}

func TestConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ttyUSB9")
	tests := []struct {
		name, yaml, want string
	}{
		{"no port", "baudRate: 9600", "bench.yaml:1: export.serial.config.port: required key is missing"},
		{"missing port", "port: " + missing, "serial port " + missing + " does not exist; check that the adapter is plugged in"},
		{"not a tty", "port: /dev/null", "cannot set up /dev/null as a serial port"},
		{"unknown key", "port: /dev/ttyS0\nbaud: 9600", "bench.yaml:2: export.serial.config.baud: unknown key; valid keys: baudRate, dataBits, flowControl, parity, port, stopBits"},
		{"bad baud rate", "port: /dev/ttyS0\nbaudRate: fast", `bench.yaml:2: export.serial.config.baudRate: "fast" is not a positive number of bits per second`},
		{"zero baud rate", "port: /dev/ttyS0\nbaudRate: 0", `bench.yaml:2: export.serial.config.baudRate: "0" is not a positive number`},
		{"bad data bits", "port: /dev/ttyS0\ndataBits: 9", `bench.yaml:2: export.serial.config.dataBits: "9" is not one of 5, 6, 7, 8`},
		{"bad parity", "port: /dev/ttyS0\nparity: weird", `bench.yaml:2: export.serial.config.parity: "weird" is not one of none, odd, even, mark, space`},
		{"bad stop bits", "port: /dev/ttyS0\nstopBits: 3", `bench.yaml:2: export.serial.config.stopBits: "3" is not one of 1, 1.5, 2`},
		{"rts/cts", "port: /dev/ttyS0\nflowControl: rts/cts", `bench.yaml:2: export.serial.config.flowControl: "rts/cts" is not supported yet`},
		{"1.5 stop bits", "port: /dev/ttyS0\nstopBits: 1.5", `bench.yaml:2: export.serial.config.stopBits: 1.5 stop bits are not supported on linux; use 1 or 2`},
		{"bad flow control", "port: /dev/ttyS0\nflowControl: magic", `bench.yaml:2: export.serial.config.flowControl: "magic" is not one of none, rts/cts, xon/xoff`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.yaml)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
