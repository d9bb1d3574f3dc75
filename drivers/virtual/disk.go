package virtual

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/drivers/storage"
	"github.com/jumpmesh/jumpmesh/proto/wire"
)

// disk is the board's storage: an image file, replaced whole and
// atomically by each write, with a sidecar file that remembers the image's
// hash across restarts.
type disk struct {
	path string
	size int64 // the largest image it takes
	log  *slog.Logger

	mu      sync.Mutex
	image   *storage.Image // nil when there is none
	writing bool
}

// meta is the sidecar file. It names the image file's size and
// modification time, so that an image replaced behind the exporter's back
// is noticed and hashed again.
type meta struct {
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	Compression string    `json:"compression"`
	ModTime     time.Time `json:"modTime"`
}

func openDisk(path string, size int64, log *slog.Logger) (*disk, error) {
	d := &disk{path: path, size: size, log: log}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("the folder of %s does not exist; create it or fix path", path)
	}
	d.removeStale()
	img, err := d.load()
	if err != nil {
		return nil, err
	}
	d.image = img
	return d, nil
}

func (d *disk) metaPath() string { return d.path + ".json" }

func (d *disk) tempPattern() string { return "." + filepath.Base(d.path) + ".*.tmp" }

// removeStale removes the temporary files of writes that a crash cut off.
func (d *disk) removeStale() {
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(d.path), d.tempPattern()))
	for _, f := range stale {
		if err := os.Remove(f); err == nil {
			d.log.Info("removed the temporary file of an unfinished write", "file", f)
		}
	}
}

// load finds out what image the disk holds: the sidecar's, if it still
// describes the image file, else the file's own hash.
func (d *disk) load() (*storage.Image, error) {
	fi, err := os.Stat(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the disk image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file; point path at a file (it is created by the first flash)", d.path)
	}
	var m meta
	if b, err := os.ReadFile(d.metaPath()); err == nil && json.Unmarshal(b, &m) == nil &&
		m.Size == fi.Size() && m.ModTime.Equal(fi.ModTime()) {
		return &storage.Image{Size: m.Size, SHA256: m.SHA256, Compression: storage.Compression(m.Compression)}, nil
	}
	f, err := os.Open(d.path)
	if err != nil {
		return nil, fmt.Errorf("read the disk image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("hash the disk image: %w", err)
	}
	d.log.Info("hashed the disk image, whose record was missing or out of date", "file", d.path)
	return &storage.Image{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Compression: storage.None}, nil
}

// last returns the image the disk holds, nil for none.
func (d *disk) last() *storage.Image {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.image == nil {
		return nil
	}
	img := *d.image
	return &img
}

// Info implements storage.Server.
func (d *disk) Info(context.Context) (storage.Info, error) {
	return storage.Info{Size: d.size, Last: d.last()}, nil
}

// Create implements storage.Server: the image goes to a temporary file
// beside the disk's, renamed over it on Commit.
func (d *disk) Create(context.Context) (storage.Target, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writing {
		return nil, wire.Errorf(wire.FailedPrecondition, "another image is being written to %s; wait for it to finish", filepath.Base(d.path))
	}
	f, err := os.CreateTemp(filepath.Dir(d.path), d.tempPattern())
	if err != nil {
		return nil, fmt.Errorf("create the new image: %w", err)
	}
	d.writing = true
	return &diskWrite{d: d, f: f}, nil
}

type diskWrite struct {
	d *disk
	f *os.File
}

func (w *diskWrite) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *diskWrite) Commit(img storage.Image) error {
	defer w.done()
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.d.path)
	}
	if err != nil {
		os.Remove(w.f.Name())
		return err
	}
	w.d.mu.Lock()
	w.d.image = &img
	w.d.mu.Unlock()
	return w.d.saveMeta(img)
}

func (w *diskWrite) Abort() error {
	defer w.done()
	w.f.Close()
	return os.Remove(w.f.Name())
}

func (w *diskWrite) done() {
	w.d.mu.Lock()
	w.d.writing = false
	w.d.mu.Unlock()
}

// saveMeta records img in the sidecar, atomically.
func (d *disk) saveMeta(img storage.Image) error {
	fi, err := os.Stat(d.path)
	if err != nil {
		return err
	}
	b, err := json.Marshal(meta{SHA256: img.SHA256, Size: img.Size, Compression: string(img.Compression), ModTime: fi.ModTime()})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(d.path), d.tempPattern())
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), d.metaPath())
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("record the image's hash in %s: %w", d.metaPath(), err)
	}
	return nil
}
