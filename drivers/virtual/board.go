// Package virtual is a simulated board for trying jumpmesh without
// hardware and for testing it: the driver types virtual.power,
// virtual.serial and virtual.storage share one board per exporter (or
// several, named by their `board` key). Powered on, the board prints a boot
// log naming the image last flashed to its storage, then serves a tiny
// shell on its console.
package virtual

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	"github.com/jumpmesh/jumpmesh/drivers/serial"
	"github.com/jumpmesh/jumpmesh/drivers/storage"
)

// defaultBoard is the board of drivers that name none.
const defaultBoard = "default"

// maxLine bounds the shell's input line; a real tty's line buffer is 4 KiB.
const maxLine = 4096

const prompt = "root@virtual:~# "

// defaultLineDelay paces the boot log: fast enough that a boot takes well
// under a second, slow enough to watch it scroll.
const defaultLineDelay = 40 * time.Millisecond

// boardFor returns the board of that name (every virtual driver's `board`
// key), creating it on first use, and claims its part for the driver b
// builds.
func boardFor(b *drivers.Build, name, part string) (*board, error) {
	if name == "" {
		name = defaultBoard
	}
	bd, err := drivers.SharedObject(b.Shared, "virtual.board/"+name, func() (*board, error) { return newBoard(name), nil })
	if err != nil {
		return nil, err
	}
	if err := bd.claim(part, b.Path); err != nil {
		return nil, b.Errorf("%v", err)
	}
	return bd, nil
}

type state int

const (
	off state = iota
	booting
	ready // the shell takes input
)

// board is one simulated board: its power, console and disk.
type board struct {
	name    string
	console *serial.Hub
	power   *power.Tracker

	mu        sync.Mutex
	owners    map[string]string // part to the driver that has it
	lineDelay time.Duration     // between boot log lines
	disk      *disk             // nil without a virtual.storage
	state     state
	stop      chan struct{} // closed to end the current boot
	booted    *storage.Image
	line      []byte
	lastCR    bool // the previous input was \r, so a \n after it is not a second line
	closed    bool
	running   sync.WaitGroup
}

func newBoard(name string) *board {
	b := &board{name: name, power: power.NewTracker(false), owners: map[string]string{}, lineDelay: defaultLineDelay}
	b.console = serial.NewHub(inputFunc(b.input))
	return b
}

type inputFunc func([]byte)

func (f inputFunc) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}

func (b *board) claim(part, path string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if other, ok := b.owners[part]; ok {
		return fmt.Errorf("board %q already has a virtual.%s driver (%s); give this one its own board: key", b.name, part, other)
	}
	b.owners[part] = path
	return nil
}

// setPower switches the board; switching it on boots it.
func (b *board) setPower(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.power.Status().On == on {
		return
	}
	if on {
		b.boot()
	} else {
		b.halt()
	}
	b.power.Set(on)
}

// boot starts a boot; b.mu is held.
func (b *board) boot() {
	b.halt()
	b.state = booting
	stop := make(chan struct{})
	b.stop = stop
	var img *storage.Image
	if b.disk != nil {
		img = b.disk.last()
	}
	b.booted = img
	lines := bootLog(b.name, img)
	delay := b.lineDelay
	b.running.Go(func() { b.printBoot(stop, lines, delay) })
}

// halt stops whatever runs; b.mu is held.
func (b *board) halt() {
	if b.stop != nil {
		close(b.stop)
		b.stop = nil
	}
	b.state = off
	b.line = b.line[:0]
}

// printBoot prints the boot log a line at a time, then the prompt, unless
// stop closes first.
func (b *board) printBoot(stop chan struct{}, lines []string, delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	for _, l := range lines {
		select {
		case <-t.C:
		case <-stop:
			return
		}
		t.Reset(delay)
		b.mu.Lock()
		if b.stop != stop {
			b.mu.Unlock()
			return
		}
		b.console.Write([]byte(l + "\r\n"))
		b.mu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop == stop {
		b.state = ready
		b.console.Write([]byte(prompt))
	}
}

func bootLog(name string, img *storage.Image) []string {
	image := "No image was ever flashed: booting the built-in fallback image"
	if img != nil {
		image = fmt.Sprintf("Image sha256 %s, %d bytes", img.SHA256, img.Size)
	}
	return []string{
		"jumpmesh virtual board " + name,
		"Loading image from storage ...",
		image,
		"Starting kernel ...",
		"[    0.000000] Linux version 6.6.0-jumpmesh (virtual)",
		"[    0.412000] Run /sbin/init as init process",
		"Welcome to the jumpmesh virtual board!",
		"virtual login: root (automatic login)",
	}
}

// input is what consoles type. Only the shell listens: a board that is
// off or booting ignores it.
func (b *board) input(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range p {
		if b.state != ready {
			return
		}
		wasCR := b.lastCR
		b.lastCR = ch == '\r'
		switch {
		case ch == '\n' && wasCR:
		case ch == '\r' || ch == '\n':
			line := string(b.line)
			b.line = b.line[:0]
			b.console.Write([]byte("\r\n"))
			b.exec(strings.Fields(line))
		case ch == 0x7f || ch == '\b':
			if len(b.line) > 0 {
				b.line = b.line[:len(b.line)-1]
				b.console.Write([]byte("\b \b"))
			}
		case ch == 0x03: // Ctrl-C
			b.line = b.line[:0]
			b.console.Write([]byte("^C\r\n" + prompt))
		case ch >= 0x20 && len(b.line) < maxLine:
			b.line = append(b.line, ch)
			b.console.Write([]byte{ch})
		}
	}
}

// exec runs a shell command line; b.mu is held.
func (b *board) exec(args []string) {
	out := func(lines ...string) {
		for _, l := range lines {
			b.console.Write([]byte(l + "\r\n"))
		}
	}
	if len(args) == 0 {
		b.console.Write([]byte(prompt))
		return
	}
	switch args[0] {
	case "uname":
		if len(args) > 1 && args[1] == "-a" {
			out("Linux virtual 6.6.0-jumpmesh #1 SMP PREEMPT aarch64 GNU/Linux")
		} else {
			out("Linux")
		}
	case "echo":
		out(strings.Join(args[1:], " "))
	case "cat":
		for _, f := range args[1:] {
			if f != "/etc/version" {
				out("cat: " + f + ": No such file or directory")
				continue
			}
			out("jumpmesh virtual board " + b.name)
			if b.booted == nil {
				out("image: none flashed (built-in fallback)")
			} else {
				out("image sha256 "+b.booted.SHA256, fmt.Sprintf("image size %d bytes", b.booted.Size))
			}
		}
	case "reboot":
		out("reboot: Restarting system")
		b.boot()
		return
	case "poweroff":
		out("reboot: Power down")
		b.halt()
		b.power.Set(false)
		return
	default:
		out("sh: " + args[0] + ": not found")
	}
	b.console.Write([]byte(prompt))
}

// Close powers the board off for good and ends its consoles and watchers.
func (b *board) Close() error {
	b.mu.Lock()
	b.closed = true
	b.halt()
	b.mu.Unlock()
	b.running.Wait()
	b.console.Close()
	b.power.Close()
	return nil
}
