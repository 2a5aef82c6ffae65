package egress

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHostSetMatch(t *testing.T) {
	s := newHostSet()
	require.NoError(t, s.add("Example.COM.", "allow"))
	require.NoError(t, s.add("*.wild.example.org", "allow"))
	require.NoError(t, s.add("10.0.0.1", "allow"))
	require.Error(t, s.add("*.com", "allow"))
	require.Error(t, s.add("a.*.com", "allow"))
	require.Error(t, s.add("*", "allow"))
	require.Error(t, s.add("*.10.0.0.1", "allow"))
	cases := map[string]bool{
		"example.com":             true,
		"www.example.com":         false,
		"wild.example.org":        false,
		"a.wild.example.org":      true,
		"a.b.wild.example.org":    true,
		"awild.example.org":       false,
		"a.wild.example.org.evil": false,
		"10.0.0.1":                true,
		"10.0.0.2":                false,
		"":                        false,
	}
	for h, want := range cases {
		_, got := s.match(NormalizeHost(h))
		assert.Equal(t, want, got, h)
	}
}

func TestValidHost(t *testing.T) {
	for _, ok := range []string{"a", "api.github.com", "x-y.z_1.io", "::1", "127.0.0.1"} {
		assert.NoError(t, ValidHost(ok), ok)
	}
	for _, bad := range []string{"", "-a.com", "a-.com", "a..com", "a.com/x", "a com", "é.com", strings.Repeat("a", 64) + ".com", "a.com:443"} {
		assert.Error(t, ValidHost(bad), bad)
	}
}

func TestTokenFormsCatchBase64AtEveryOffset(t *testing.T) {
	tok := "s3cr3t-VALUE-0123456789"
	sc := newScanner([]string{tok})
	for pre := 0; pre < 6; pre++ {
		for suf := 0; suf < 4; suf++ {
			data := strings.Repeat("p", pre) + tok + strings.Repeat("s", suf)
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
				assert.Equal(t, KindInjectedToken, sc.scanString(enc.EncodeToString([]byte(data))), "pre=%d suf=%d", pre, suf)
			}
		}
	}
	assert.Equal(t, KindInjectedToken, sc.scanString("x="+hex.EncodeToString([]byte(tok))))
	assert.Equal(t, KindInjectedToken, sc.scanString(strings.ToUpper(hex.EncodeToString([]byte(tok)))))
	assert.Equal(t, "", sc.scanString("nothing to see"))
	assert.Equal(t, "x [REDACTED] y", sc.redact("x "+tok+" y"))
}

func TestShapes(t *testing.T) {
	sc := newScanner(nil)
	cases := map[string]string{
		"-----BEGIN RSA PRIVATE KEY-----":       KindPEMPrivateKey,
		"-----BEGIN PRIVATE KEY-----":           KindPEMPrivateKey,
		"-----BEGIN ENCRYPTED PRIVATE KEY-----": KindPEMPrivateKey,
		"-----BEGIN CERTIFICATE-----":           "",
		"token=ghs_" + strings.Repeat("x", 36):  KindGitHubToken,
		"ghp_short":                             "",
		"github_pat_" + strings.Repeat("A", 82): KindGitHubPAT,
		"AKIAIOSFODNN7EXAMPLE":                  KindAWSKeyID,
		"ASIAIOSFODNN7EXAMPLE":                  KindAWSKeyID,
		"XAKIAIOSFODNN7EXAMPLE":                 "",
		"AKIAIOSFODNN7EXAMPLEX":                 "",
	}
	for in, want := range cases {
		assert.Equal(t, want, sc.scanString(in), in)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{
		Listen: ":3128", MetricsListen: "10.0.0.2:9090", CACert: "/ca.pem", CAKey: "/ca-key.pem",
		Routes:      []Route{{Host: "api.github.com", Header: "Authorization", Format: "Bearer {token}", TokenRef: "GH"}},
		Allow:       []string{"*.npmjs.org"},
		SecretsFile: "/secrets.json",
	}
	require.NoError(t, good.Validate())
	mut := func(f func(*Config)) Config {
		c := good
		c.Routes = append([]Route(nil), good.Routes...)
		f(&c)
		return c
	}
	bad := map[string]Config{
		"no listen":       mut(func(c *Config) { c.Listen = "" }),
		"listen no port":  mut(func(c *Config) { c.Listen = "1.2.3.4" }),
		"ca half":         mut(func(c *Config) { c.CAKey = "" }),
		"token no ca":     mut(func(c *Config) { c.CACert, c.CAKey = "", "" }),
		"bad header":      mut(func(c *Config) { c.Routes[0].Header = "Auth orization" }),
		"no placeholder":  mut(func(c *Config) { c.Routes[0].Format = "Bearer" }),
		"crlf format":     mut(func(c *Config) { c.Routes[0].Format = "{token}\r\nX: y" }),
		"no secrets file": mut(func(c *Config) { c.SecretsFile = "" }),
		"dup route":       mut(func(c *Config) { c.Routes = append(c.Routes, Route{Host: "API.github.com"}) }),
		"wild route":      mut(func(c *Config) { c.Routes[0].Host = "*.github.com" }),
		"bad allow":       mut(func(c *Config) { c.Allow = []string{"*"} }),
		"bad port":        mut(func(c *Config) { c.AllowedConnectPorts = []int{0} }),
	}
	for name, c := range bad {
		assert.Error(t, c.Validate(), name)
	}
}

func TestLoadConfigRejectsUnknownKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "egress.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"listen":":3128","allow":["a.test"]}`), 0o644))
	c, err := LoadConfig(p)
	require.NoError(t, err)
	assert.Equal(t, []string{"a.test"}, c.Allow)
	require.NoError(t, os.WriteFile(p, []byte(`{"listen":":3128","alow":["a.test"]}`), 0o644))
	_, err = LoadConfig(p)
	require.ErrorContains(t, err, "alow")
}

func TestSecretsFileModeAndErrorsHideContent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets.json")
	require.NoError(t, WriteSecrets(p, map[string]string{"A": "value-one"}))
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	m, err := LoadSecrets(p)
	require.NoError(t, err)
	assert.Equal(t, "value-one", m["A"])
	require.NoError(t, os.WriteFile(p, []byte(`{"A": ["very-secret-value"]}`), 0o600))
	_, err = LoadSecrets(p)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "very-secret-value")
}

func TestDynamicAllowRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dyn.json")
	hosts, err := ReadDynamicAllow(p)
	require.NoError(t, err)
	assert.Empty(t, hosts)
	require.NoError(t, WriteDynamicAllow(p, []string{"a.test", "*.b.test"}))
	hosts, err = ReadDynamicAllow(p)
	require.NoError(t, err)
	assert.Equal(t, []string{"a.test", "*.b.test"}, hosts)
}
