package storage_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers/storage"
	_ "github.com/jumpmesh/jumpmesh/drivers/virtual"
	"github.com/jumpmesh/jumpmesh/exporter/exportertest"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

const disk = `apiVersion: jumpmesh.dev/v1alpha1
kind: ExporterConfig
metadata: {name: test}
export:
  storage: {type: virtual.storage, config: {path: ./disk.img, size: 8Mi}}
`

func storageDriver(t *testing.T) (*client.Driver, string) {
	t.Helper()
	h := exportertest.Start(t, disk)
	d, err := h.Session.Driver(t.Context(), "storage")
	require.NoError(t, err)
	return d, h.Dir
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{2}).Read(b)
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func execute(ctx context.Context, d *client.Driver, stdin io.Reader, stdout, stderr io.Writer, args ...string) error {
	root := &cobra.Command{Use: "j", SilenceUsage: true, SilenceErrors: true}
	sc := &cobra.Command{Use: "storage"}
	sc.AddCommand(storage.Commands(d)...)
	root.AddCommand(sc)
	root.SetArgs(append([]string{"storage"}, args...))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

func TestFlashAndInfo(t *testing.T) {
	d, dir := storageDriver(t)
	image := random(3 << 20)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(image)
	zw.Close()
	file := filepath.Join(t.TempDir(), "disk.img.gz")
	require.NoError(t, os.WriteFile(file, gz.Bytes(), 0o644))

	var stdout, stderr bytes.Buffer
	require.NoError(t, execute(t.Context(), d, nil, &stdout, io.Discard, "info"))
	require.Equal(t, "size: 8MiB (8388608 bytes)\nlast write: none recorded\n", stdout.String())

	stdout.Reset()
	require.NoError(t, execute(t.Context(), d, nil, &stdout, &stderr, "flash", file, "--sha256", strings.ToUpper(sum(image))))
	require.Equal(t, "wrote 3145728 bytes (decompressed from gzip), sha256 "+sum(image)+"\n", stdout.String())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	require.Len(t, lines, 10, "a progress line every 10%%: %q", stderr.String())
	require.True(t, strings.HasPrefix(lines[9], "flash "+file+": 100% ("), lines[9])
	written, err := os.ReadFile(filepath.Join(dir, "disk.img"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(image, written))

	stdout.Reset()
	require.NoError(t, execute(t.Context(), d, nil, &stdout, io.Discard, "info"))
	require.Equal(t, "size: 8MiB (8388608 bytes)\nlast write: 3145728 bytes, sha256 "+sum(image)+", sent as gzip\n", stdout.String())

	stdout.Reset()
	small := []byte("from stdin")
	require.NoError(t, execute(t.Context(), d, bytes.NewReader(small), &stdout, io.Discard, "flash", "-"))
	require.Equal(t, "wrote 10 bytes, sha256 "+sum(small)+"\n", stdout.String())
}

func TestFlashFails(t *testing.T) {
	big := random(9 << 20)
	var xzBuf bytes.Buffer
	xw, _ := xz.NewWriter(&xzBuf)
	xw.Write(random(512 << 10))
	xw.Close()
	corrupt := xzBuf.Bytes()
	for i := 4096; i < len(corrupt); i += 4096 {
		corrupt[i] ^= 0x55
	}
	files := map[string][]byte{"big.img": big, "corrupt.img.xz": corrupt, "small.img": []byte("small")}
	dir := t.TempDir()
	for name, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	tests := []struct {
		name string
		args []string
		code wire.Code // 0: a client-side error
		want string
	}{
		{"bigger than the disk", []string{"flash", "big.img"}, wire.InvalidArgument, "the image is bigger than the target's 8MiB (8388608 bytes); use a smaller image or a bigger target; the target was left as it was"},
		{"corrupt xz", []string{"flash", "corrupt.img.xz"}, wire.DataLoss, "the image is not valid xz: "},
		{"wrong sha256", []string{"flash", "small.img", "--sha256", sum([]byte("other"))}, wire.DataLoss, "the image's sha256 is " + sum([]byte("small"))},
		{"bad sha256", []string{"flash", "small.img", "--sha256", "xyz"}, 0, `--sha256 "xyz" is not 64 hex digits`},
		{"bad compression", []string{"flash", "small.img", "--compression", "bz2"}, 0, `--compression: compression "bz2" is not one of auto, none, gzip, xz, zstd`},
		{"missing file", []string{"flash", "missing.img"}, 0, "open the image: open missing.img: no such file or directory"},
		{"no file", []string{"flash"}, 0, "accepts 1 arg(s), received 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, diskDir := storageDriver(t)
			t.Chdir(dir)
			err := execute(t.Context(), d, nil, io.Discard, io.Discard, tt.args...)
			require.ErrorContains(t, err, tt.want)
			if tt.code != 0 {
				require.Equal(t, tt.code, wire.CodeOf(err), "%v", err)
			}
			_, serr := os.Stat(filepath.Join(diskDir, "disk.img"))
			require.ErrorIs(t, serr, os.ErrNotExist, "nothing was written")
			tmp, _ := filepath.Glob(filepath.Join(diskDir, ".*.tmp"))
			require.Empty(t, tmp, "no temporary file is left")
		})
	}
}
