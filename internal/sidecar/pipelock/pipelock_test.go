package pipelock

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(p, got, 0o644))
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err, "run with -update to create %s", p)
	assert.Equal(t, string(want), string(got))
}

func TestGenerateConfigGolden(t *testing.T) {
	cases := map[string]Input{
		"strict_tls": {
			Listen:         "0.0.0.0:8888",
			MetricsListen:  "10.213.6.3:9091",
			Allow:          []string{"registry.npmjs.org", "API.GitHub.com.", "*.githubusercontent.com", "registry.npmjs.org"},
			CACert:         "/pipelock/ca.pem",
			CAKey:          "/pipelock/ca-key.pem",
			Passthrough:    []string{"pinned.example.com"},
			TrustedDomains: []string{"git-gate.bundle.internal"},
			SSRFAllowCIDRs: []string{"10.213.5.0/24"},
		},
		"minimal_no_tls": {
			Listen:        ":8888",
			MetricsListen: "10.0.0.2:9091",
		},
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := GenerateConfig(in)
			require.NoError(t, err)
			golden(t, name, b)
			var m map[string]any
			require.NoError(t, yaml.Unmarshal(b, &m))
			assert.EqualValues(t, 1, m["version"])
			assert.Equal(t, "strict", m["mode"])
			assert.Equal(t, map[string]any{"enabled": false}, m["sentry"])
			mon := m["fetch_proxy"].(map[string]any)["monitoring"].(map[string]any)
			assert.EqualValues(t, DefaultRateLimit, mon["max_requests_per_minute"], "never 0 (pipelock's 60/min default)")
		})
	}
}

func TestGenerateConfigRejects(t *testing.T) {
	base := Input{Listen: ":8888", MetricsListen: "10.0.0.2:9091"}
	bad := map[string]func(*Input){
		"same listen":   func(i *Input) { i.MetricsListen = i.Listen },
		"no metrics":    func(i *Input) { i.MetricsListen = "" },
		"half ca":       func(i *Input) { i.CACert = "/ca.pem" },
		"bad host":      func(i *Input) { i.Allow = []string{"*"} },
		"bad cidr":      func(i *Input) { i.SSRFAllowCIDRs = []string{"10.0.0.0"} },
		"negative rate": func(i *Input) { i.RateLimitPerMinute = -1 },
	}
	for name, f := range bad {
		in := base
		f(&in)
		_, err := GenerateConfig(in)
		assert.Error(t, err, name)
	}
}

func TestLocate(t *testing.T) {
	ctx := context.Background()
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvImage {
				return v
			}
			return ""
		}
	}
	noBinary := func(string) (string, error) { return "", errors.New("not found") }
	hasBinary := func(string) (string, error) { return "/usr/local/bin/pipelock", nil }
	present := func(_ context.Context, ref string) (bool, error) { return ref == "pipelock:local", nil }

	loc, err := Locate(ctx, present, env("pipelock:local"), noBinary)
	require.NoError(t, err)
	assert.Equal(t, Location{Image: "pipelock:local"}, loc)

	_, err = Locate(ctx, present, env("pipelock:missing"), hasBinary)
	require.ErrorIs(t, err, ErrNotAvailable, "a named image that is absent is an error, not a fallback")
	assert.Contains(t, err.Error(), "has no such image")

	loc, err = Locate(ctx, present, env(""), hasBinary)
	require.NoError(t, err)
	assert.Equal(t, Location{Binary: "/usr/local/bin/pipelock"}, loc)

	_, err = Locate(ctx, present, env(""), noBinary)
	require.ErrorIs(t, err, ErrNotAvailable)
	assert.Contains(t, err.Error(), EnvImage)
	assert.Contains(t, err.Error(), "on PATH")

	_, err = Locate(ctx, func(context.Context, string) (bool, error) { return false, errors.New("engine down") }, env("x"), noBinary)
	require.ErrorContains(t, err, "engine down")
}
