package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMeshKey: the exporter's mesh key is made once, private, and read
// back the same at every start; a key file that is not a private Ed25519
// key is refused with what to do.
func TestMeshKey(t *testing.T) {
	dir := t.TempDir()
	path := meshKeyPath(filepath.Join(dir, "bench-01.yaml"))
	require.Equal(t, filepath.Join(dir, "bench-01.key"), path)
	made, isNew, err := loadMeshKey(path)
	require.NoError(t, err)
	require.True(t, isNew)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	again, isNew, err := loadMeshKey(path)
	require.NoError(t, err)
	require.False(t, isNew)
	require.True(t, made.Equal(again), "the same key at every start")

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	require.NoError(t, err)
	tests := []struct {
		name    string
		data    []byte
		perm    os.FileMode
		wantErr string
	}{
		{"readable by others", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), 0o644, "chmod 600"},
		{"not PEM", []byte("hello"), 0o600, "not a PEM PRIVATE KEY"},
		{"not Ed25519", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), 0o600, "not an Ed25519 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.key")
			require.NoError(t, os.WriteFile(p, tt.data, tt.perm))
			require.NoError(t, os.Chmod(p, tt.perm))
			_, _, err := loadMeshKey(p)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
