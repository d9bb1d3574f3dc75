package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jumpmesh/jumpmesh/coordinator/certs"
)

// meshKeyPath is where an exporter's mesh key lives by default: beside its
// config, bench-01.yaml's in bench-01.key.
func meshKeyPath(configFile string) string {
	base := configFile
	for _, ext := range []string{".yaml", ".yml"} {
		base = strings.TrimSuffix(base, ext)
	}
	return base + ".key"
}

// loadMeshKey reads the Ed25519 key in path (PKCS #8 PEM), or makes one
// and writes it there, readable by its owner only. made reports a new key.
// The key outlives restarts, so that the key the coordinator pins for the
// exporter stays the same.
func loadMeshKey(path string) (key ed25519.PrivateKey, made bool, err error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("generate mesh key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, fmt.Errorf("encode mesh key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("save mesh key: %w", err)
		}
		if err := certs.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("save mesh key: %w", err)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("mesh key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("mesh key %s can be read by others (mode %04o); run `chmod 600 %s`", path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("mesh key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("mesh key %s: not a PEM PRIVATE KEY; move it away and a new key is made", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("mesh key %s: %w", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("mesh key %s: a %T, not an Ed25519 key; move it away and a new key is made", path, parsed)
	}
	return key, false, nil
}
