package egress

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/ca"
)

func TestUpstreamRootsTrustTheExtraCA(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, err := ca.Generate(dir, "upstream test CA")
	require.NoError(t, err)
	pair, err := ca.Load(certPath, keyPath)
	require.NoError(t, err)
	leaf, err := ca.IssueServer(pair, "api.test")
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(leaf.Certificate[0])
	require.NoError(t, err)

	// Without the extra root the upstream is not trusted.
	sys, _ := x509.SystemCertPool()
	if sys == nil {
		sys = x509.NewCertPool()
	}
	_, err = cert.Verify(x509.VerifyOptions{DNSName: "api.test", Roots: sys})
	require.Error(t, err)

	roots, err := upstreamRoots(certPath)
	require.NoError(t, err)
	_, err = cert.Verify(x509.VerifyOptions{DNSName: "api.test", Roots: roots})
	assert.NoError(t, err)
}

func TestUpstreamRootsRejectsAFileWithoutCertificates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(p, []byte("not a certificate\n"), 0o644))
	_, err := upstreamRoots(p)
	assert.ErrorContains(t, err, "no PEM certificate")
	_, err = upstreamRoots(filepath.Join(t.TempDir(), "missing.pem"))
	assert.Error(t, err)
}
