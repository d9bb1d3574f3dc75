package storage

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/docker/go-units"
	storagev1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/storage/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
)

// copyBuffer sizes the buffers between the stream, the decompressor and the
// target: large enough that per-call costs vanish next to hashing.
const copyBuffer = 256 << 10

var errTooBig = errors.New("image bigger than the target")

// write writes the image that stream carries to a new target of s.
func write(ctx context.Context, s Server, req *storagev1.WriteRequest, stream io.Reader) (Image, error) {
	want := strings.ToLower(req.GetSha256())
	if want != "" && !isSHA256(want) {
		return Image{}, wire.Errorf(wire.InvalidArgument, "expected sha256 %q is not 64 hex digits; give the output of `sha256sum` on the decompressed image", req.GetSha256())
	}
	info, err := s.Info(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("read the target's size: %w", err)
	}
	t, err := s.Create(ctx)
	if err != nil {
		return Image{}, err
	}
	img, err := copyImage(t, stream, compressionFromProto(req.GetCompression()), info.Size)
	if err == nil && want != "" && img.SHA256 != want {
		err = wire.Errorf(wire.DataLoss, "the image's sha256 is %s, not the expected %s: it is another image, or it was damaged on the way", img.SHA256, want)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err() // the client went away: that is the reason, not what it did to the stream
		}
		return Image{}, abort(t, err)
	}
	if err := t.Commit(img); err != nil {
		return Image{}, fmt.Errorf("commit the image: %w", err)
	}
	return img, nil
}

// abort rolls t back after err, and says how that went.
func abort(t Target, err error) error {
	code := wire.CodeOf(err)
	if aerr := t.Abort(); aerr != nil {
		return &wire.Error{Code: code, Message: fmt.Sprintf("%v; rolling the write back failed: %v", err, aerr)}
	}
	return &wire.Error{Code: code, Message: err.Error() + "; the target was left as it was"}
}

// copyImage decompresses src as c says (detecting it for Auto) into t,
// counting and hashing what it writes and refusing more than capacity
// bytes (0: no limit).
func copyImage(t io.Writer, src io.Reader, c Compression, capacity int64) (Image, error) {
	br := bufio.NewReaderSize(sourceReader{src}, copyBuffer)
	if c == Auto {
		var err error
		if c, err = detect(br); err != nil {
			return Image{}, classify(c, capacity, err)
		}
	}
	r, release, err := decompress(c, br)
	if err != nil {
		return Image{}, classify(c, capacity, err)
	}
	defer release()
	w := &targetWriter{t: t, capacity: capacity, hash: sha256.New()}
	if _, err := io.CopyBuffer(w, r, make([]byte, copyBuffer)); err != nil {
		return Image{}, classify(c, capacity, err)
	}
	return Image{Size: w.n, SHA256: hex.EncodeToString(w.hash.Sum(nil)), Compression: c}, nil
}

// classify turns a copy's error into what the user must know: the
// client's stream failed, the image is too big, the target failed, or the
// image is not what it claims to be.
func classify(c Compression, capacity int64, err error) error {
	var se sourceError
	var te targetError
	switch {
	case errors.As(err, &se):
		return se.err
	case errors.Is(err, errTooBig):
		return wire.Errorf(wire.InvalidArgument, "the image is bigger than the target's %s (%d bytes); use a smaller image or a bigger target", units.BytesSize(float64(capacity)), capacity)
	case errors.As(err, &te):
		return fmt.Errorf("write to the target: %w", te.err)
	}
	check, ok := checkCommand[c]
	if !ok {
		return err
	}
	return wire.Errorf(wire.DataLoss, "the image is not valid %s: %v; check the file with `%s`", c, err, check)
}

// sourceError marks an error of the client's stream, as opposed to the
// image it carries.
type sourceError struct{ err error }

func (e sourceError) Error() string { return e.err.Error() }
func (e sourceError) Unwrap() error { return e.err }

type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = sourceError{err}
	}
	return n, err
}

// targetError marks an error of the target.
type targetError struct{ err error }

func (e targetError) Error() string { return e.err.Error() }
func (e targetError) Unwrap() error { return e.err }

// targetWriter writes to the target, hashing and counting.
type targetWriter struct {
	t        io.Writer
	capacity int64
	hash     hash.Hash
	n        int64
}

func (w *targetWriter) Write(p []byte) (int, error) {
	if w.capacity > 0 && w.n+int64(len(p)) > w.capacity {
		return 0, errTooBig
	}
	n, err := w.t.Write(p)
	w.hash.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, targetError{err}
	}
	return n, nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}
