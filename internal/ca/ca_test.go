package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGenerateWritesModesAndP256CA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "egress")
	certPath, keyPath, err := Generate(dir, "bot-bottle demo-abc12")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, CertFile), certPath)
	assert.Equal(t, filepath.Join(dir, KeyFile), keyPath)

	st, err := os.Stat(keyPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(certPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())

	certPEM, err := os.ReadFile(certPath)
	require.NoError(t, err)
	block, _ := pem.Decode(certPEM)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	assert.True(t, cert.IsCA)
	assert.True(t, cert.BasicConstraintsValid)
	assert.Equal(t, "bot-bottle demo-abc12", cert.Subject.CommonName)
	assert.WithinDuration(t, time.Now().Add(Validity), cert.NotAfter, time.Minute)
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	require.True(t, ok, "public key is %T", cert.PublicKey)
	assert.Equal(t, elliptic.P256(), pub.Curve)

	loaded, err := Load(certPath, keyPath)
	require.NoError(t, err)
	priv, ok := loaded.PrivateKey.(*ecdsa.PrivateKey)
	require.True(t, ok)
	assert.Equal(t, elliptic.P256(), priv.Curve)
	require.NotNil(t, loaded.Leaf)
	assert.True(t, loaded.Leaf.IsCA)
}

func TestLoadRejectsMismatchedPairAndNonCA(t *testing.T) {
	a := t.TempDir()
	b := t.TempDir()
	certA, _, err := Generate(a, "a")
	require.NoError(t, err)
	_, keyB, err := Generate(b, "b")
	require.NoError(t, err)
	_, err = Load(certA, keyB)
	require.Error(t, err)
	keyPEM, _ := os.ReadFile(keyB)
	assert.NotContains(t, err.Error(), string(keyPEM))

	_, err = Load(filepath.Join(a, "missing.pem"), keyB)
	require.Error(t, err)

	caPair, err := Load(certA, filepath.Join(a, KeyFile))
	require.NoError(t, err)
	leaf, err := IssueServer(caPair, "api.example.test")
	require.NoError(t, err)
	leafDir := t.TempDir()
	lc := filepath.Join(leafDir, "leaf.pem")
	lk := filepath.Join(leafDir, "leaf-key.pem")
	require.NoError(t, os.WriteFile(lc, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}), 0o644))
	kd, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(lk, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600))
	_, err = Load(lc, lk)
	require.ErrorContains(t, err, "not a CA")
}

func TestIssueServerVerifiesAgainstCA(t *testing.T) {
	certPath, keyPath, err := Generate(t.TempDir(), "test")
	require.NoError(t, err)
	caPair, err := Load(certPath, keyPath)
	require.NoError(t, err)
	leaf, err := IssueServer(caPair, "api.example.test", "127.0.0.1")
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caPair.Leaf)
	_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "api.example.test", Roots: pool})
	require.NoError(t, err)
	_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example.test", Roots: pool})
	require.Error(t, err)
	_ = tls.Certificate(leaf)
}
