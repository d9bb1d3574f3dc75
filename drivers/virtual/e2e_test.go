package virtual_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	"github.com/jumpmesh/jumpmesh/drivers/serial"
	"github.com/jumpmesh/jumpmesh/drivers/storage"
	_ "github.com/jumpmesh/jumpmesh/drivers/virtual"
	"github.com/jumpmesh/jumpmesh/exporter/exportertest"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

const board = `apiVersion: jumpmesh.dev/v1alpha1
kind: ExporterConfig
metadata: {name: bench-01}
export:
  power: {type: virtual.power, config: {cycleDelay: 200ms}}
  serial: {type: virtual.serial}
  storage: {type: virtual.storage, config: {path: ./disk.img, size: 64Mi}}
`

func driver(t *testing.T, s *client.Session, name string) *client.Driver {
	t.Helper()
	d, err := s.Driver(t.Context(), name)
	require.NoError(t, err)
	return d
}

// expect opens a console, runs action, and waits for pattern in what the
// console shows.
func expect(t *testing.T, s *client.Session, pattern string, action func()) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := serial.NewClient(driver(t, s, "serial")).Console(ctx)
	require.NoError(t, err)
	defer st.Close()
	action()
	var seen bytes.Buffer
	_, err = serial.Expect(st, regexp.MustCompile(pattern), &seen)
	require.NoError(t, err, "waiting for %q; saw %q", pattern, seen.String())
	return seen.String()
}

// TestFlashCycleBoot is the demo: flash an image, cycle the power, and the
// boot log names it.
func TestFlashCycleBoot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := exportertest.Session(t, board)
		pw := power.NewClient(driver(t, s, "power"))
		disk := storage.NewClient(driver(t, s, "storage"))

		log := expect(t, s, `login:`, func() { require.NoError(t, pw.On(t.Context())) })
		require.Contains(t, log, "No image was ever flashed")

		image := bytes.Repeat([]byte("jumpmesh"), 64<<10)
		var xzImage bytes.Buffer
		w, err := xz.NewWriter(&xzImage)
		require.NoError(t, err)
		w.Write(image)
		require.NoError(t, w.Close())
		sum := sha256.Sum256(image)
		want := hex.EncodeToString(sum[:])
		img, err := disk.Write(t.Context(), &xzImage, storage.WriteOptions{SHA256: want})
		require.NoError(t, err)
		require.Equal(t, storage.Image{Size: int64(len(image)), SHA256: want, Compression: storage.XZ}, img)

		start := time.Now()
		log = expect(t, s, `login:`, func() { require.NoError(t, pw.Cycle(t.Context(), 0)) })
		require.Less(t, time.Since(start), time.Second, "cycle and boot take well under a second")
		require.Contains(t, log, fmt.Sprintf("Image sha256 %s, %d bytes", want, len(image)))

		st, err := pw.Status(t.Context())
		require.NoError(t, err)
		require.True(t, st.On)

		// poweroff from the console: the power reads off.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		con, err := serial.NewClient(driver(t, s, "serial")).Console(ctx)
		require.NoError(t, err)
		io.WriteString(con, "poweroff\n")
		_, err = serial.Expect(con, regexp.MustCompile("Power down"), io.Discard)
		require.NoError(t, err)
		synctest.Wait()
		st, err = pw.Status(t.Context())
		require.NoError(t, err)
		require.False(t, st.On)
	})
}
