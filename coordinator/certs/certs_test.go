package certs

import (
	"crypto/x509"
	"net"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadOrCreateKeepsItsCertificate(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreate(dir, []string{"lab.example", "10.0.0.7"})
	require.NoError(t, err)
	again, err := LoadOrCreate(dir, nil)
	require.NoError(t, err)
	require.Equal(t, ChainFingerprint(first), ChainFingerprint(again), "a restart keeps the certificate clients pinned")

	leaf, err := x509.ParseCertificate(first.Certificate[0])
	require.NoError(t, err)
	require.Contains(t, leaf.DNSNames, "lab.example")
	require.True(t, leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")))
	require.NoError(t, leaf.VerifyHostname("lab.example"))
	require.Regexp(t, regexp.MustCompile(`^sha256:[0-9a-f]{64}$`), ChainFingerprint(first))
}
