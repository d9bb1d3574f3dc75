package exporter

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const header = "apiVersion: jumpmesh.dev/v1alpha1\nkind: ExporterConfig\nmetadata:\n  name: bench-01\n"

func TestParseConfig(t *testing.T) {
	c, err := Parse("ok.yaml", []byte(header+`  labels: {board: virtual}
export:
  power: {type: test.power, description: main power}
  board:
    type: test.group
    labels: {slot: "1"}
    children:
      power2: {type: test.power, config: {delay: 1s}}
`))
	require.NoError(t, err)
	require.Equal(t, "bench-01", c.Metadata.Name)
	require.Equal(t, map[string]string{"board": "virtual"}, c.Metadata.Labels)
	require.Len(t, c.Export, 2)
	require.Equal(t, "power", c.Export[0].Name)
	require.Equal(t, "main power", c.Export[0].Description)
	require.Equal(t, "board", c.Export[1].Name)
	require.Equal(t, "power2", c.Export[1].Children[0].Name)
	require.Equal(t, "1s", c.Export[1].Children[0].Config.Content[1].Value)
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"empty", "", "bad.yaml: the file is empty"},
		{"syntax", "apiVersion: [\n", "bad.yaml:1: YAML syntax"},
		{"tabs", "a:\n\tb: c\n", "bad.yaml:2: YAML syntax"},
		{"not a mapping", "- a\n- b\n", "bad.yaml:1: want a mapping of keys, got a list"},
		{"unknown top key", header + "exports: {}\n", "bad.yaml:5: exports: unknown key; valid keys: apiVersion, endpoint, export, kind, metadata, tls, token"},
		{"missing metadata", "apiVersion: jumpmesh.dev/v1alpha1\nkind: ExporterConfig\n", "bad.yaml:1: metadata: required key is missing"},
		{"missing name", "apiVersion: jumpmesh.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {labels: {a: b}}\n", "bad.yaml:3: metadata.name: required key is missing"},
		{"wrong kind", "apiVersion: jumpmesh.dev/v1alpha1\nkind: ClientConfig\nmetadata: {name: x}\n", "bad.yaml:1: want apiVersion: jumpmesh.dev/v1alpha1 and kind: ExporterConfig"},
		{"labels not a map", header + "  labels: [a]\n", "bad.yaml:5: metadata.labels: want a mapping, got a list"},
		{"label wrong type", header + "  labels: {a: {b: c}}\n", "bad.yaml:5: metadata.labels.a: want a single value, got a mapping"},
		{"driver missing type", header + "export:\n  power: {config: {}}\n", "bad.yaml:6: export.power.type: required key is missing"},
		{"driver unknown key", header + "export:\n  power: {type: x, confg: {}}\n", "bad.yaml:6: export.power.confg: unknown key; valid keys: children, config, description, labels, type"},
		{"child unknown key", header + "export:\n  a:\n    type: x\n    children:\n      b: {type: y, bogus: 1}\n", "bad.yaml:9: export.a.children.b.bogus: unknown key"},
		{"duplicate key", header + "export:\n  p: {type: x, type: y}\n", "bad.yaml"},
		{"export not a map", header + "export: [a]\n", "bad.yaml:5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tt.yaml))
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorContains(t, err, "nope.yaml does not exist; see examples/virtual-board.yaml")
}

func TestLoadSetsDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "e.yaml")
	require.NoError(t, os.WriteFile(file, []byte(header), 0o600))
	c, err := Load(file)
	require.NoError(t, err)
	require.Equal(t, dir, c.Dir)
	require.Equal(t, file, c.File)
}
