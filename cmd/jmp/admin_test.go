package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestExportBlockCopiesVerbatim(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{
			name: "block in the middle, comments kept",
			file: "apiVersion: v\nexport:\n  # the board\n  power: {type: virtual.power}   # inline\n  serial:\n    type: virtual.serial\nmetadata: {name: x}\n",
			want: "export:\n  # the board\n  power: {type: virtual.power}   # inline\n  serial:\n    type: virtual.serial\n",
		},
		{
			name: "block last, no final newline",
			file: "metadata: {name: x}\nexport:\n  power: {type: virtual.power}",
			want: "export:\n  power: {type: virtual.power}\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "board.yaml")
			require.NoError(t, os.WriteFile(path, []byte(tt.file), 0o600))
			got, err := exportBlock(path)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	path := filepath.Join(t.TempDir(), "none.yaml")
	require.NoError(t, os.WriteFile(path, []byte("metadata: {name: x}\n"), 0o600))
	_, err := exportBlock(path)
	require.ErrorContains(t, err, "no export: block")
}
