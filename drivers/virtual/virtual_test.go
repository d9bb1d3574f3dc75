package virtual

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	storagev1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/storage/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// rig builds virtual drivers into one exporter's worth of shared objects.
type rig struct {
	t      *testing.T
	dir    string
	shared *drivers.Shared
	built  []drivers.Driver
}

func newRig(t *testing.T, dir string) *rig {
	r := &rig{t: t, dir: dir, shared: &drivers.Shared{}}
	t.Cleanup(r.close)
	return r
}

// close closes the drivers, then the shared board, as the exporter does.
func (r *rig) close() {
	for i := len(r.built) - 1; i >= 0; i-- {
		require.NoError(r.t, r.built[i].Close())
	}
	r.built = nil
	for _, o := range r.shared.All() {
		require.NoError(r.t, o.(io.Closer).Close())
	}
	r.shared = &drivers.Shared{}
}

func (r *rig) build(typ, name, configYAML string) (drivers.Driver, error) {
	r.t.Helper()
	var doc yaml.Node
	require.NoError(r.t, yaml.Unmarshal([]byte(configYAML), &doc))
	tp, ok := drivers.Lookup(typ)
	require.True(r.t, ok, typ)
	var cfg *yaml.Node
	if len(doc.Content) > 0 {
		cfg = doc.Content[0]
	}
	d, err := tp.New(&drivers.Build{
		Name: name, Path: name, Exporter: "test", File: "bench.yaml", Dir: r.dir,
		Log: slog.New(slog.DiscardHandler), Config: cfg, Shared: r.shared,
	})
	if err == nil {
		for _, iface := range d.Interfaces() {
			require.NoError(r.t, iface.Validate())
		}
		r.built = append(r.built, d)
	}
	return d, err
}

func (r *rig) mustBuild(typ, name, configYAML string) drivers.Driver {
	r.t.Helper()
	d, err := r.build(typ, name, configYAML)
	require.NoError(r.t, err)
	return d
}

// board builds the three parts of the default board.
func (r *rig) board() (*Power, drivers.Driver, drivers.Driver) {
	p := r.mustBuild("virtual.power", "power", "cycleDelay: 100ms")
	s := r.mustBuild("virtual.serial", "serial", "")
	st := r.mustBuild("virtual.storage", "storage", "path: disk.img\nsize: 1Mi")
	return p.(*Power), s, st
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// take returns what was written since the last take.
func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// console is a client of a serial driver's Console.
type console struct {
	typed *io.PipeWriter
	out   syncBuffer
	done  chan error
}

type consoleStream struct {
	io.Reader
	io.Writer
}

func openConsole(t *testing.T, d drivers.Driver) *console {
	t.Helper()
	h, _, ok := d.Interfaces()[0].Method("Console")
	require.True(t, ok)
	c := &console{done: make(chan error, 1)}
	in, typed := io.Pipe()
	c.typed = typed
	go func() {
		_, err := h.CallBytes(context.Background(), h.NewRequest(), consoleStream{in, &c.out})
		in.Close()
		c.done <- err
	}()
	t.Cleanup(func() { typed.Close(); <-c.done })
	synctest.Wait()
	return c
}

// send types a line and lets the board answer.
func (c *console) send(line string) string {
	io.WriteString(c.typed, line+"\r")
	synctest.Wait()
	return c.out.take()
}

// boot waits for a boot to end and returns the log.
func (c *console) boot(t *testing.T) string {
	t.Helper()
	time.Sleep(time.Second)
	synctest.Wait()
	log := c.out.take()
	require.True(t, strings.HasSuffix(log, prompt), "the boot ends at the prompt within a second, got %q", log)
	return log
}

func flash(t *testing.T, d drivers.Driver, image []byte, wantSHA string) error {
	t.Helper()
	h, _, _ := d.Interfaces()[0].Method("Write")
	_, err := h.CallBytes(context.Background(), &storagev1.WriteRequest{Sha256: wantSHA}, consoleStream{bytes.NewReader(image), io.Discard})
	return err
}

func shaHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestBoardBootsAndServesAShell(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, t.TempDir())
		p, s, st := r.board()
		c := openConsole(t, s)
		ctx := t.Context()

		require.Empty(t, c.send("uname"), "powered off, the console is quiet and ignores input")

		require.NoError(t, p.On(ctx))
		synctest.Wait()
		require.Empty(t, c.out.take(), "the boot log comes line by line")
		time.Sleep(defaultLineDelay)
		synctest.Wait()
		log := c.out.take()
		require.Equal(t, "jumpmesh virtual board default\r\n", log)
		bootTime := defaultLineDelay * time.Duration(len(bootLog("default", nil)))
		require.Less(t, bootTime, time.Second/2, "a boot takes well under a second")
		time.Sleep(bootTime - defaultLineDelay - time.Millisecond)
		synctest.Wait()
		log += c.out.take()
		require.False(t, strings.HasSuffix(log, prompt), "the prompt comes last")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		log += c.out.take()
		require.True(t, strings.HasSuffix(log, prompt), "the prompt ends the boot, got %q", log)
		require.Contains(t, log, "No image was ever flashed")
		require.Contains(t, log, "login:")

		tests := []struct{ in, want string }{
			{"uname", "uname\r\nLinux\r\n" + prompt},
			{"uname -a", "uname -a\r\nLinux virtual 6.6.0-jumpmesh #1 SMP PREEMPT aarch64 GNU/Linux\r\n" + prompt},
			{"echo hi  there", "echo hi  there\r\nhi there\r\n" + prompt},
			{"cat /etc/version", "cat /etc/version\r\njumpmesh virtual board default\r\nimage: none flashed (built-in fallback)\r\n" + prompt},
			{"cat /etc/shadow", "cat /etc/shadow\r\ncat: /etc/shadow: No such file or directory\r\n" + prompt},
			{"frobnicate --now", "frobnicate --now\r\nsh: frobnicate: not found\r\n" + prompt},
			{"", "\r\n" + prompt},
		}
		for _, tt := range tests {
			require.Equal(t, tt.want, c.send(tt.in), "command %q", tt.in)
		}
		io.WriteString(c.typed, "uname\r\nuname\n")
		synctest.Wait()
		require.Equal(t, strings.Repeat("uname\r\nLinux\r\n"+prompt, 2), c.out.take(), "\r\n is one line end, and so is \n")
		io.WriteString(c.typed, "unamx\x7fe\r")
		synctest.Wait()
		require.Equal(t, "unamx\b \be\r\nLinux\r\n"+prompt, c.out.take(), "backspace edits the line")
		io.WriteString(c.typed, "sleep 100\x03")
		synctest.Wait()
		require.Equal(t, "sleep 100^C\r\n"+prompt, c.out.take(), "Ctrl-C drops the line")

		image := []byte("a bootable image")
		require.NoError(t, flash(t, st, image, ""))
		require.Contains(t, c.send("cat /etc/version"), "none flashed", "the running system keeps the image it booted")
		require.Equal(t, "reboot\r\nreboot: Restarting system\r\n", c.send("reboot"))
		log = c.boot(t)
		require.Contains(t, log, "Image sha256 "+shaHex(image)+", 16 bytes", "the boot log names the new image")
		require.Contains(t, c.send("cat /etc/version"), "image sha256 "+shaHex(image)+"\r\nimage size 16 bytes\r\n")
	})
}

func TestPoweroffFromTheShell(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, t.TempDir())
		p, s, _ := r.board()
		c := openConsole(t, s)
		var seen []bool
		watchCtx, stopWatch := context.WithCancel(t.Context())
		watching := make(chan error, 1)
		go func() {
			watching <- p.Watch(watchCtx, func(st power.Status) error { seen = append(seen, st.On); return nil })
		}()
		synctest.Wait()
		require.NoError(t, p.On(t.Context()))
		c.boot(t)
		require.Equal(t, "poweroff\r\nreboot: Power down\r\n", c.send("poweroff"))
		st, err := p.Status(t.Context())
		require.NoError(t, err)
		require.False(t, st.On, "poweroff turns the power off")
		require.Empty(t, c.send("uname"), "and the console goes quiet")
		time.Sleep(time.Second)
		require.Empty(t, c.out.take())
		stopWatch()
		require.ErrorIs(t, <-watching, context.Canceled)
		require.Equal(t, []bool{false, true, false}, seen)
	})
}

func TestPowerOffStopsTheBoot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, t.TempDir())
		p, s, _ := r.board()
		c := openConsole(t, s)
		require.NoError(t, p.On(t.Context()))
		time.Sleep(3 * defaultLineDelay)
		require.NoError(t, p.Off(t.Context()))
		synctest.Wait()
		c.out.take()
		time.Sleep(time.Second)
		synctest.Wait()
		require.Empty(t, c.out.take(), "no more boot log once the power is off")
	})
}

func TestCycleBootsTheNewImage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, t.TempDir())
		p, s, st := r.board()
		c := openConsole(t, s)
		require.NoError(t, p.On(t.Context()))
		require.NotContains(t, c.boot(t), "Image sha256")

		image := bytes.Repeat([]byte("disk"), 1000)
		require.NoError(t, flash(t, st, image, shaHex(image)))
		start := time.Now()
		require.NoError(t, p.Cycle(t.Context(), 0))
		require.Equal(t, 100*time.Millisecond, time.Since(start), "the configured cycleDelay")
		require.Contains(t, c.boot(t), "Image sha256 "+shaHex(image)+", 4000 bytes")
	})
}

func TestLineDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, t.TempDir())
		p := r.mustBuild("virtual.power", "power", "").(*Power)
		s := r.mustBuild("virtual.serial", "serial", "lineDelay: 10ms")
		c := openConsole(t, s)
		require.NoError(t, p.On(t.Context()))
		time.Sleep(10 * time.Millisecond * time.Duration(len(bootLog("default", nil))))
		synctest.Wait()
		require.True(t, strings.HasSuffix(c.out.take(), prompt), "the whole log in lines × lineDelay")
	})
}

func TestBoardsAreSeparate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, t.TempDir())
		pa := r.mustBuild("virtual.power", "power-a", "board: a").(*Power)
		sa := r.mustBuild("virtual.serial", "serial-a", "board: a")
		r.mustBuild("virtual.power", "power-b", "board: b")
		sb := r.mustBuild("virtual.serial", "serial-b", "board: b")
		ca, cb := openConsole(t, sa), openConsole(t, sb)
		require.NoError(t, pa.On(t.Context()))
		require.Contains(t, ca.boot(t), "jumpmesh virtual board a")
		require.Empty(t, cb.out.take(), "board b stays off")

		_, err := r.build("virtual.power", "power-a2", "board: a")
		require.EqualError(t, err, `bench.yaml:1: export.power-a2: board "a" already has a virtual.power driver (power-a); give this one its own board: key`)
	})
}

func TestOnExit(t *testing.T) {
	tests := []struct {
		config string
		wantOn bool
	}{
		{"", false},
		{"onExit: off", false},
		{"onExit: keep", true},
		{"onExit: on", true},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, t.TempDir())
				p := r.mustBuild("virtual.power", "power", tt.config).(*Power)
				bd := p.board
				require.NoError(t, p.On(t.Context()))
				require.NoError(t, p.Close())
				require.Equal(t, tt.wantOn, bd.power.Status().On)
			})
		})
	}
}

func TestCycleInterrupted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, t.TempDir())
		p := r.mustBuild("virtual.power", "power", "").(*Power)
		require.NoError(t, p.On(t.Context()))
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, p.Cycle(ctx, 0), context.DeadlineExceeded, "the default delay is 1s")
		st, _ := p.Status(t.Context())
		require.False(t, st.On, "an interrupted cycle leaves the power off")
	})
}

func TestStoragePersistsAndRollsBack(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir)
	st := r.mustBuild("virtual.storage", "storage", "path: disk.img\nsize: 1Ki")
	image := bytes.Repeat([]byte{7}, 1000)
	require.NoError(t, flash(t, st, image, ""))
	disk := filepath.Join(dir, "disk.img")
	got, err := os.ReadFile(disk)
	require.NoError(t, err)
	require.Equal(t, image, got)

	err = flash(t, st, bytes.Repeat([]byte{8}, 2000), "")
	require.ErrorContains(t, err, "the image is bigger than the target's 1KiB (1024 bytes)")
	err = flash(t, st, []byte("other"), shaHex([]byte("something else")))
	require.Equal(t, wire.DataLoss, wire.CodeOf(err))
	got, err = os.ReadFile(disk)
	require.NoError(t, err)
	require.Equal(t, image, got, "failed writes leave the disk as it was")
	assertNoTemp(t, dir)

	info := func(d drivers.Driver) *storagev1.InfoResponse {
		h, _, _ := d.Interfaces()[0].Method("Info")
		resp, err := h.CallUnary(context.Background(), &storagev1.InfoRequest{})
		require.NoError(t, err)
		return resp.(*storagev1.InfoResponse)
	}
	want := &storagev1.WriteResponse{BytesWritten: 1000, Sha256: shaHex(image), Compression: storagev1.Compression_COMPRESSION_NONE}
	require.Equal(t, int64(1024), info(st).GetSize())
	require.Equal(t, want.String(), info(st).GetLastWrite().String())

	r.close() // the exporter restarts
	st = r.mustBuild("virtual.storage", "storage", "path: disk.img\nsize: 1Ki")
	require.Equal(t, want.String(), info(st).GetLastWrite().String(), "the last image survives a restart")

	r.close() // someone replaces the image behind the exporter's back
	other := []byte("hand-copied image")
	require.NoError(t, os.WriteFile(disk, other, 0o644))
	st = r.mustBuild("virtual.storage", "storage", "path: disk.img\nsize: 1Ki")
	require.Equal(t, shaHex(other), info(st).GetLastWrite().GetSha256(), "a stale record is not trusted")

	r.close() // a crash left a half-written image
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".disk.img.123.tmp"), []byte("half"), 0o644))
	r.mustBuild("virtual.storage", "storage", "path: disk.img")
	assertNoTemp(t, dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	tmp, err := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	require.NoError(t, err)
	require.Empty(t, tmp, "no temporary files are left")
}

func TestStorageOneWriteAtATime(t *testing.T) {
	r := newRig(t, t.TempDir())
	st := r.mustBuild("virtual.storage", "storage", "path: disk.img").(*Storage)
	first, err := st.disk.Create(t.Context())
	require.NoError(t, err)
	_, err = st.disk.Create(t.Context())
	require.Equal(t, wire.FailedPrecondition, wire.CodeOf(err))
	require.ErrorContains(t, err, "another image is being written to disk.img; wait for it to finish")
	require.NoError(t, first.Abort())
	second, err := st.disk.Create(t.Context())
	require.NoError(t, err, "an aborted write frees the disk")
	require.NoError(t, second.Abort())
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		typ, yaml, want string
	}{
		{"virtual.storage", "size: 1Mi", "bench.yaml:1: export.storage.config.path: required key is missing"},
		{"virtual.storage", "path: d.img\nsize: lots", `bench.yaml:2: export.storage.config.size: "lots" is not a size`},
		{"virtual.storage", "path: d.img\nsize: 0", "storage.config.size: must be positive"},
		{"virtual.storage", "path: nowhere/d.img", "the folder of DIR/nowhere/d.img does not exist"},
		{"virtual.storage", "path: .", "DIR is not a regular file"},
		{"virtual.power", "onExit: never", `bench.yaml:1: export.power.config.onExit: "never" is not one of off, on, keep`},
		{"virtual.power", "cycle: 1s", "bench.yaml:1: export.power.config.cycle: unknown key; valid keys: board, cycleDelay, onExit"},
		{"virtual.serial", "lineDelay: -1s", `bench.yaml:1: export.serial.config.lineDelay: duration "-1s" is negative`},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			dir := t.TempDir()
			r := newRig(t, dir)
			name := strings.TrimPrefix(tt.typ, "virtual.")
			_, err := r.build(tt.typ, name, tt.yaml)
			require.ErrorContains(t, err, strings.ReplaceAll(tt.want, "DIR", dir))
		})
	}
}
