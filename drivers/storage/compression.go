package storage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	storagev1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/storage/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression is how an image is compressed.
type Compression string

// The compressions an image may have. Auto detects it from the image's
// first bytes.
const (
	Auto Compression = "auto"
	None Compression = "none"
	Gzip Compression = "gzip"
	XZ   Compression = "xz"
	Zstd Compression = "zstd"
)

// Compressions lists the values a user may give.
var Compressions = []Compression{Auto, None, Gzip, XZ, Zstd}

// ParseCompression parses a user's compression name.
func ParseCompression(s string) (Compression, error) {
	for _, c := range Compressions {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("compression %q is not one of auto, none, gzip, xz, zstd", s)
}

var compressionProto = map[Compression]storagev1.Compression{
	Auto: storagev1.Compression_COMPRESSION_UNSPECIFIED,
	None: storagev1.Compression_COMPRESSION_NONE,
	Gzip: storagev1.Compression_COMPRESSION_GZIP,
	XZ:   storagev1.Compression_COMPRESSION_XZ,
	Zstd: storagev1.Compression_COMPRESSION_ZSTD,
}

func (c Compression) proto() storagev1.Compression { return compressionProto[c] }

func compressionFromProto(p storagev1.Compression) Compression {
	for c, v := range compressionProto {
		if v == p {
			return c
		}
	}
	return Auto
}

// magic is the first bytes of each compressed format.
var magic = []struct {
	c      Compression
	prefix []byte
}{
	{Gzip, []byte{0x1f, 0x8b}},
	{XZ, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
}

// maxMagic is the longest magic prefix.
const maxMagic = 6

// detect says how the image in r is compressed, from its first bytes.
func detect(r *bufio.Reader) (Compression, error) {
	head, err := r.Peek(maxMagic)
	if err != nil && err != io.EOF {
		return "", err
	}
	for _, m := range magic {
		if bytes.HasPrefix(head, m.prefix) {
			return m.c, nil
		}
	}
	return None, nil
}

// decompress returns a reader of r's decompressed bytes and a func that
// releases the decompressor.
func decompress(c Compression, r io.Reader) (io.Reader, func(), error) {
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case XZ:
		zr, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() {}, nil
	case Zstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// checkCommand is how a user checks a compressed file for themselves.
var checkCommand = map[Compression]string{Gzip: "gzip -t FILE", XZ: "xz -t FILE", Zstd: "zstd -t FILE"}
