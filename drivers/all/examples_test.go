package all_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/creack/pty"
	"github.com/jumpmesh/jumpmesh/drivers"
	_ "github.com/jumpmesh/jumpmesh/drivers/all"
	"github.com/jumpmesh/jumpmesh/exporter/exportertest"
	"github.com/stretchr/testify/require"
)

// TestExamplesLoad builds every example config into a running exporter,
// and checks that every driver type has an example.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	used := map[string]bool{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			config := string(data)
			if strings.Contains(config, "/dev/ttyUSB0") {
				// The serial example names a USB adapter; a pseudo-terminal
				// stands in for it.
				ptmx, tty, err := pty.Open()
				require.NoError(t, err)
				t.Cleanup(func() { ptmx.Close(); tty.Close() })
				config = strings.ReplaceAll(config, "/dev/ttyUSB0", tty.Name())
			}
			h := exportertest.Start(t, config)
			report, err := h.Session.Report(t.Context())
			require.NoError(t, err)
			require.NotEmpty(t, report.GetDrivers())
			for _, d := range report.GetDrivers() {
				used[d.GetType()] = true
			}
		})
	}
	for _, typ := range drivers.Types() {
		require.True(t, used[typ.Name], "driver type %s has no example in examples/", typ.Name)
	}
	require.True(t, slices.ContainsFunc(files, func(f string) bool { return filepath.Base(f) == "virtual-board.yaml" }))
}
