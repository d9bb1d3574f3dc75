package storage

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/jumpmesh/jumpmesh/drivers"
	storagev1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/storage/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

// memStorage is a Server whose target is memory: Commit replaces the
// content, Abort leaves it as it was.
type memStorage struct {
	capacity int64
	content  []byte
	last     *Image
	created  int
	aborted  int
	// failWrite and failAbort make the target fail.
	failWrite, failAbort error
}

func (m *memStorage) Info(context.Context) (Info, error) {
	return Info{Size: m.capacity, Last: m.last}, nil
}

func (m *memStorage) Create(context.Context) (Target, error) {
	m.created++
	return &memTarget{m: m}, nil
}

type memTarget struct {
	m   *memStorage
	buf bytes.Buffer
}

func (t *memTarget) Write(p []byte) (int, error) {
	if t.m.failWrite != nil {
		return 0, t.m.failWrite
	}
	return t.buf.Write(p)
}

func (t *memTarget) Commit(img Image) error {
	t.m.content = t.buf.Bytes()
	t.m.last = &img
	return nil
}

func (t *memTarget) Abort() error {
	t.m.aborted++
	return t.m.failAbort
}

// clientStream is the driver's end of a byte stream: the client's bytes,
// then err (io.EOF for a clean end).
type clientStream struct {
	r   io.Reader
	err error
}

func (s *clientStream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF && s.err != nil {
		err = s.err
	}
	return n, err
}

func (s *clientStream) Write(p []byte) (int, error) { return len(p), nil }

func callWrite(m *memStorage, req *storagev1.WriteRequest, s drivers.ByteStream) (*storagev1.WriteResponse, error) {
	h, _, _ := Bind(m).Method("Write")
	resp, err := h.CallBytes(context.Background(), req, s)
	if err != nil {
		return nil, err
	}
	return resp.(*storagev1.WriteResponse), nil
}

func randomImage(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func compress(t testing.TB, c Compression, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch c {
	case Gzip:
		w = gzip.NewWriter(&buf)
	case XZ:
		w, err = xz.NewWriter(&buf)
	case Zstd:
		w, err = zstd.NewWriter(&buf)
	default:
		return b
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBindValidates(t *testing.T) {
	require.NoError(t, Bind(&memStorage{}).Validate())
}

func TestWrite(t *testing.T) {
	image := randomImage(300 << 10)
	sum := hexSHA(image)
	tests := []struct {
		name     string
		sent     Compression // how the test compresses the image
		declared Compression // what the request says
		want     Compression
	}{
		{"raw, detected", None, Auto, None},
		{"gzip, detected", Gzip, Auto, Gzip},
		{"xz, detected", XZ, Auto, XZ},
		{"zstd, detected", Zstd, Auto, Zstd},
		{"xz, declared", XZ, XZ, XZ},
		{"raw, declared", None, None, None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &memStorage{capacity: 1 << 20}
			resp, err := callWrite(m, &storagev1.WriteRequest{Compression: tt.declared.proto(), Sha256: sum},
				&clientStream{r: bytes.NewReader(compress(t, tt.sent, image))})
			require.NoError(t, err)
			want := Image{Size: int64(len(image)), SHA256: sum, Compression: tt.want}
			require.Equal(t, want, imageFromProto(resp))
			require.Equal(t, image, m.content)
			require.Equal(t, &want, m.last)
			require.Zero(t, m.aborted)
		})
	}
}

func TestWriteEdgeSizes(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"shorter than any magic", 3},
		{"exactly the capacity", 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			image := randomImage(tt.size)
			m := &memStorage{capacity: 4096}
			resp, err := callWrite(m, &storagev1.WriteRequest{}, &clientStream{r: bytes.NewReader(image)})
			require.NoError(t, err)
			require.Equal(t, int64(tt.size), resp.GetBytesWritten())
			require.Equal(t, hexSHA(image), resp.GetSha256())
		})
	}
}

func TestWriteFails(t *testing.T) {
	image := randomImage(64 << 10)
	xzImage := compress(t, XZ, image)
	corruptXZ := bytes.Clone(xzImage)
	for i := 100; i < 200; i++ {
		corruptXZ[i] ^= 0xff
	}
	gz := compress(t, Gzip, image)
	errGone := &wire.Error{Code: wire.Canceled, Message: "the client went away"}
	tests := []struct {
		name     string
		m        *memStorage
		req      *storagev1.WriteRequest
		stream   *clientStream
		code     wire.Code
		contains []string
		// created says whether a target was made; if so it must be aborted.
		created bool
	}{
		{
			name: "sha256 mismatch", m: &memStorage{},
			req:    &storagev1.WriteRequest{Sha256: hexSHA([]byte("another image"))},
			stream: &clientStream{r: bytes.NewReader(image)},
			code:   wire.DataLoss, created: true,
			contains: []string{"the image's sha256 is " + hexSHA(image), "not the expected " + hexSHA([]byte("another image")), "the target was left as it was"},
		},
		{
			name: "sha256 not hex", m: &memStorage{},
			req:    &storagev1.WriteRequest{Sha256: "abc"},
			stream: &clientStream{r: bytes.NewReader(image)},
			code:   wire.InvalidArgument, contains: []string{`expected sha256 "abc" is not 64 hex digits`},
		},
		{
			name: "corrupt xz", m: &memStorage{},
			req: &storagev1.WriteRequest{}, stream: &clientStream{r: bytes.NewReader(corruptXZ)},
			code: wire.DataLoss, created: true,
			contains: []string{"the image is not valid xz: ", "check the file with `xz -t FILE`", "left as it was"},
		},
		{
			name: "truncated gzip", m: &memStorage{},
			req: &storagev1.WriteRequest{}, stream: &clientStream{r: bytes.NewReader(gz[:len(gz)/2])},
			code: wire.DataLoss, created: true,
			contains: []string{"the image is not valid gzip: unexpected EOF", "gzip -t FILE"},
		},
		{
			name: "raw image declared as zstd", m: &memStorage{},
			req: &storagev1.WriteRequest{Compression: storagev1.Compression_COMPRESSION_ZSTD}, stream: &clientStream{r: bytes.NewReader(image)},
			code: wire.DataLoss, created: true,
			contains: []string{"the image is not valid zstd: ", "zstd -t FILE"},
		},
		{
			name: "bigger than the target", m: &memStorage{capacity: 32 << 10},
			req: &storagev1.WriteRequest{}, stream: &clientStream{r: bytes.NewReader(xzImage)},
			code: wire.InvalidArgument, created: true,
			contains: []string{"the image is bigger than the target's 32KiB (32768 bytes)", "left as it was"},
		},
		{
			name: "client goes away", m: &memStorage{},
			req: &storagev1.WriteRequest{}, stream: &clientStream{r: bytes.NewReader(image[:1000]), err: errGone},
			code: wire.Canceled, created: true,
			contains: []string{"the client went away"},
		},
		{
			name: "target fails", m: &memStorage{failWrite: errors.New("I/O error")},
			req: &storagev1.WriteRequest{}, stream: &clientStream{r: bytes.NewReader(image)},
			code: wire.Unknown, created: true,
			contains: []string{"write to the target: I/O error"},
		},
		{
			name: "rollback fails", m: &memStorage{failAbort: errors.New("the card holds half an image")},
			req:    &storagev1.WriteRequest{Sha256: hexSHA(nil)},
			stream: &clientStream{r: bytes.NewReader(image)},
			code:   wire.DataLoss, created: true,
			contains: []string{"rolling the write back failed: the card holds half an image"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := callWrite(tt.m, tt.req, tt.stream)
			require.Error(t, err)
			require.Equal(t, tt.code, wire.CodeOf(err), "code of %v", err)
			for _, s := range tt.contains {
				require.ErrorContains(t, err, s)
			}
			if tt.created {
				require.Equal(t, 1, tt.m.created)
				require.Equal(t, 1, tt.m.aborted, "a failed write is rolled back")
			} else {
				require.Zero(t, tt.m.created, "a bad request fails before touching the target")
			}
			require.Nil(t, tt.m.content, "nothing was committed")
			require.Nil(t, tt.m.last)
		})
	}
}

func TestInfo(t *testing.T) {
	h, _, _ := Bind(&memStorage{capacity: 1024, last: &Image{Size: 3, SHA256: "ab", Compression: XZ}}).Method("Info")
	resp, err := h.CallUnary(context.Background(), &storagev1.InfoRequest{})
	require.NoError(t, err)
	r := resp.(*storagev1.InfoResponse)
	require.Equal(t, int64(1024), r.GetSize())
	require.Equal(t, Image{Size: 3, SHA256: "ab", Compression: XZ}, imageFromProto(r.GetLastWrite()))

	h, _, _ = Bind(&memStorage{}).Method("Info")
	resp, err = h.CallUnary(context.Background(), &storagev1.InfoRequest{})
	require.NoError(t, err)
	require.Nil(t, resp.(*storagev1.InfoResponse).GetLastWrite(), "no write: none reported")
}

func TestParseCompression(t *testing.T) {
	for _, c := range Compressions {
		got, err := ParseCompression(string(c))
		require.NoError(t, err)
		require.Equal(t, c, got)
		require.Equal(t, c, compressionFromProto(c.proto()), "round trip through the proto")
	}
	_, err := ParseCompression("bzip2")
	require.EqualError(t, err, `compression "bzip2" is not one of auto, none, gzip, xz, zstd`)
}

// FuzzWrite feeds arbitrary images through detection and decompression:
// every outcome is a committed image that matches what was written, or an
// error that blames the image, never a panic or a half-committed target.
func FuzzWrite(f *testing.F) {
	image := []byte("a small image")
	f.Add(image)
	for _, c := range []Compression{Gzip, XZ, Zstd} {
		z := compress(f, c, image)
		f.Add(z)
		f.Add(z[:len(z)/2])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &memStorage{capacity: 1 << 20}
		resp, err := callWrite(m, &storagev1.WriteRequest{}, &clientStream{r: bytes.NewReader(data)})
		if err != nil {
			code := wire.CodeOf(err)
			require.True(t, code == wire.DataLoss || code == wire.InvalidArgument, "unexpected error %v (code %v)", err, code)
			require.Equal(t, 1, m.aborted)
			require.Nil(t, m.content)
			return
		}
		require.Equal(t, int64(len(m.content)), resp.GetBytesWritten())
		require.Equal(t, hexSHA(m.content), resp.GetSha256())
		if compressionFromProto(resp.GetCompression()) == None {
			require.True(t, bytes.Equal(data, m.content), "a raw image is written as it came")
		}
	})
}
