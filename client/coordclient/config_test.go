package coordclient

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeConfig(t *testing.T, dir, name string) string {
	t.Helper()
	c := &ClientConfig{APIVersion: APIVersion, Kind: KindClientConfig, Metadata: Metadata{Name: name},
		Endpoint: "https://" + name + ":8443", TLS: TLSConfig{CAFingerprint: "sha256:00"}, Token: "t-" + name}
	path := filepath.Join(dir, name+".yaml")
	require.NoError(t, c.Save(path))
	return path
}

func TestResolveClientConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	t.Setenv(EnvClientConfig, "")

	_, err := ResolveClientConfig("")
	require.ErrorContains(t, err, "no client config")

	s, err := DefaultStore()
	require.NoError(t, err)
	stored, err := LoadClientConfig(writeConfig(t, dir, "stored"))
	require.NoError(t, err)
	_, err = s.Save(stored)
	require.NoError(t, err)
	c, err := ResolveClientConfig("")
	require.NoError(t, err)
	require.Equal(t, "stored", c.Metadata.Name, "the first saved config becomes current")

	t.Setenv(EnvClientConfig, writeConfig(t, dir, "env"))
	c, err = ResolveClientConfig("")
	require.NoError(t, err)
	require.Equal(t, "env", c.Metadata.Name, "the environment beats the current config")

	c, err = ResolveClientConfig(writeConfig(t, dir, "flag"))
	require.NoError(t, err)
	require.Equal(t, "flag", c.Metadata.Name, "the flag beats the environment")

	info, err := os.Stat(s.Path("stored"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "configs hold tokens")
	require.ErrorContains(t, s.Use("nope"), "no client config named")
	names, err := s.List()
	require.NoError(t, err)
	require.Equal(t, []string{"stored"}, names)
}

func TestLoadClientConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, body, want string
	}{
		{"unknown key", "apiVersion: x\nkind: ClientConfig\nmetadata: {name: a}\nendpoint: https://a\ntoken: t\ntsl: {}\n", "tsl: unknown key"},
		{"wrong kind", "apiVersion: x\nkind: ExporterConfig\nmetadata: {name: a}\nendpoint: https://a\ntoken: t\n", "want ClientConfig"},
		{"plain http", "apiVersion: x\nkind: ClientConfig\nmetadata: {name: a}\nendpoint: http://a\ntoken: t\ntls: {caFingerprint: x}\n", "want https://"},
		{"nothing to trust", "apiVersion: x\nkind: ClientConfig\nmetadata: {name: a}\nendpoint: https://a\ntoken: t\n", "caFingerprint or caFile"},
		{"missing token", "apiVersion: x\nkind: ClientConfig\nmetadata: {name: a}\nendpoint: https://a\n", "token: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".yaml")
			require.NoError(t, os.WriteFile(path, []byte(tt.body), 0o600))
			_, err := LoadClientConfig(path)
			require.ErrorContains(t, err, tt.want)
			require.ErrorContains(t, err, path, "errors name the file")
		})
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	for _, fp := range []string{"sha256:ab01", "AB01", "ab:01", " SHA256:AB:01 "} {
		require.Equal(t, "ab01", NormalizeFingerprint(fp), fp)
	}
}
