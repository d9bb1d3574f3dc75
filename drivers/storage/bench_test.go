package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	storagev1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/storage/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
)

// benchServer writes every image to the same writer, so that the
// interface and the io.Copy baseline write to the same target.
type benchServer struct{ w io.WriteSeeker }

func (s benchServer) Info(context.Context) (Info, error) { return Info{}, nil }

func (s benchServer) Create(context.Context) (Target, error) {
	if _, err := s.w.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return benchTarget{s.w}, nil
}

type benchTarget struct{ io.Writer }

func (benchTarget) Commit(Image) error { return nil }
func (benchTarget) Abort() error       { return nil }

// discard is an in-memory target that keeps nothing.
type discard struct{}

func (discard) Write(p []byte) (int, error)    { return len(p), nil }
func (discard) Seek(int64, int) (int64, error) { return 0, nil }

// frames reads like the exporter's byte stream: one DATA frame a Read.
type frames struct{ r *bytes.Reader }

func (f frames) Read(p []byte) (int, error) { return f.r.Read(p[:min(len(p), wire.DataChunkSize)]) }
func (frames) Write(p []byte) (int, error)  { return len(p), nil }

// BenchmarkWrite measures Write through the interface (decompression
// detection, sha256, counting, the size check) against io.Copy of the same
// bytes to the same target in the same run. Compare the MB/s of
// .../interface to .../baseline.
func BenchmarkWrite(b *testing.B) {
	image := randomImage(16 << 20)
	zstdImage := compress(b, Zstd, image)
	file, err := os.Create(filepath.Join(b.TempDir(), "disk.img"))
	if err != nil {
		b.Fatal(err)
	}
	defer file.Close()
	for _, target := range []struct {
		name string
		w    io.WriteSeeker
	}{{"memory", discard{}}, {"file", file}} {
		b.Run(target.name+"/baseline", func(b *testing.B) {
			b.SetBytes(int64(len(image)))
			for b.Loop() {
				target.w.Seek(0, io.SeekStart)
				// The same framing as the interface gets, without it.
				if _, err := io.Copy(onlyWriter{target.w}, frames{bytes.NewReader(image)}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(target.name+"/baseline-sha256", func(b *testing.B) {
			// What the interface cannot avoid: hashing every byte.
			b.SetBytes(int64(len(image)))
			for b.Loop() {
				target.w.Seek(0, io.SeekStart)
				if _, err := io.Copy(io.MultiWriter(target.w, sha256.New()), frames{bytes.NewReader(image)}); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, in := range []struct {
			name string
			data []byte
		}{{"raw", image}, {"zstd", zstdImage}} {
			b.Run(target.name+"/interface-"+in.name, func(b *testing.B) {
				h, _, _ := Bind(benchServer{target.w}).Method("Write")
				b.SetBytes(int64(len(image)))
				for b.Loop() {
					if _, err := h.CallBytes(context.Background(), &storagev1.WriteRequest{}, frames{bytes.NewReader(in.data)}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// onlyWriter hides a target's other methods, so io.Copy takes the same
// path it does for the interface's targets.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }
