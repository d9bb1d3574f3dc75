// Package port is the `serial` driver type: a real serial port (a USB
// adapter, a board's UART) served as the serial interface.
package port

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"

	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/serial"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	goserial "go.bug.st/serial"
)

func init() {
	drivers.Register(drivers.Type{
		Name:        "serial",
		Description: "A serial port (USB adapter, UART) as a console.",
		New:         New,
	})
}

// defaultBaudRate is what most boards' consoles run at.
const defaultBaudRate = 115200

// readBuffer is the reader's buffer: far more than a UART's FIFO holds
// between two reads.
const readBuffer = 4096

type config struct {
	Port        string      `yaml:"port" required:"true"`
	BaudRate    baudRate    `yaml:"baudRate"`
	DataBits    dataBits    `yaml:"dataBits"`
	Parity      parity      `yaml:"parity"`
	StopBits    stopBits    `yaml:"stopBits"`
	FlowControl flowControl `yaml:"flowControl"`
}

// Port is an open serial port shared by its consoles.
type Port struct {
	name string
	port goserial.Port
	hub  *serial.Hub
	done chan struct{}

	closing   atomic.Bool // Close closed the port: its read error is expected
	closeOnce sync.Once
}

// New opens the port that b's config names.
func New(b *drivers.Build) (drivers.Driver, error) {
	cfg := config{BaudRate: defaultBaudRate, DataBits: 8}
	if err := b.Decode(&cfg); err != nil {
		return nil, err
	}
	mode := &goserial.Mode{
		BaudRate: int(cfg.BaudRate),
		DataBits: int(cfg.DataBits),
		Parity:   cfg.Parity.mode,
		StopBits: cfg.StopBits.mode,
	}
	p, err := goserial.Open(cfg.Port, mode)
	if err != nil {
		return nil, b.ErrorfAt("port", "%s", openError(cfg.Port, err))
	}
	d := &Port{name: cfg.Port, port: p, hub: serial.NewHub(p), done: make(chan struct{})}
	go d.read()
	return d, nil
}

// read passes the port's output to the consoles until the port closes or
// fails.
func (d *Port) read() {
	defer close(d.done)
	buf := make([]byte, readBuffer)
	for {
		n, err := d.port.Read(buf)
		if n > 0 {
			d.hub.Write(buf[:n])
		}
		if err != nil {
			if d.closing.Load() {
				return
			}
			d.hub.CloseWithError(wire.Errorf(wire.Unavailable, "serial port %s failed: %v; check its cable, then restart the exporter", d.name, err))
			return
		}
	}
}

// Interfaces implements drivers.Driver.
func (d *Port) Interfaces() []drivers.Interface {
	return []drivers.Interface{serial.Bind(d.hub)}
}

// Close ends the consoles and closes the port.
func (d *Port) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.closing.Store(true)
		d.hub.Close()
		err = d.port.Close()
		<-d.done
	})
	if err != nil {
		return fmt.Errorf("close serial port %s: %w", d.name, err)
	}
	return nil
}

// openError says what to check when a port does not open.
func openError(name string, err error) string {
	if _, serr := os.Stat(name); errors.Is(serr, fs.ErrNotExist) {
		return fmt.Sprintf("serial port %s does not exist; check that the adapter is plugged in and the name is right (ls /dev/serial/by-id/ lists the ports the system sees)", name)
	}
	var pe *goserial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case goserial.PortBusy:
			return fmt.Sprintf("serial port %s is in use by another program; close it (fuser %s names it)", name, name)
		case goserial.PermissionDenied:
			return fmt.Sprintf("no permission to open serial port %s; add the exporter's user to the port's group (often dialout)", name)
		case goserial.InvalidSerialPort:
			// The library reports both a file that is no tty and settings
			// the port refuses this way.
			return fmt.Sprintf("cannot set up %s as a serial port (%v); check that it is one and that it takes baudRate, dataBits, parity and stopBits as given", name, err)
		}
	}
	return fmt.Sprintf("open serial port %s: %v", name, err)
}
