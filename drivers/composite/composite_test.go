package composite_test

import (
	"log/slog"
	"testing"

	"github.com/jumpmesh/jumpmesh/drivers"
	_ "github.com/jumpmesh/jumpmesh/drivers/composite"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestComposite(t *testing.T) {
	tests := []struct {
		name, config, wantErr string
	}{
		{name: "no config"},
		{name: "empty config", config: "{}"},
		{name: "config given", config: "\nchildren: {}", wantErr: "bench.yaml:2: export.board: composite takes no config; put the drivers it groups under children:"},
	}
	typ, ok := drivers.Lookup("composite")
	require.True(t, ok)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg *yaml.Node
			if tt.config != "" {
				var doc yaml.Node
				require.NoError(t, yaml.Unmarshal([]byte(tt.config), &doc))
				cfg = doc.Content[0]
			}
			d, err := typ.New(&drivers.Build{Name: "board", Path: "board", File: "bench.yaml", Log: slog.New(slog.DiscardHandler), Config: cfg, Shared: &drivers.Shared{}})
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Empty(t, d.Interfaces(), "a composite only groups")
			require.NoError(t, d.Close())
		})
	}
}
