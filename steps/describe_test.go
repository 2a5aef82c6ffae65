package steps

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/manifest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func goldenManifests() map[string]*manifest.Manifest {
	full := &manifest.Bottle{
		Git:       []manifest.GitEntry{{Name: "app", Upstream: "ssh://git@git.example.com/team/app.git", IdentityFile: "~/.ssh/deploy"}},
		GitUser:   &manifest.GitUser{Name: "Dev Bot", Email: "dev@example.com"},
		Supervise: true,
		Egress:    &manifest.Egress{Routes: []manifest.Route{{Host: "api.anthropic.com", TokenEnv: "ANTHROPIC_API_KEY"}, {Host: "registry.npmjs.org"}}},
		Allow:     []string{"*.githubusercontent.com"},
	}
	agent := func(b string, skills ...string) map[string]*manifest.Agent {
		return map[string]*manifest.Agent{"demo": {Bottle: b, Prompt: "Fix the test.", Skills: skills}}
	}
	return map[string]*manifest.Manifest{
		"minimal":         {Bottles: map[string]*manifest.Bottle{"dev": {}}, Agents: agent("dev")},
		"full":            {Bottles: map[string]*manifest.Bottle{"dev": full}, Agents: agent("dev", "verify")},
		"pipelock":        {Bottles: map[string]*manifest.Bottle{"dev": {Firewall: "pipelock", Allow: []string{"example.com"}}}, Agents: agent("dev")},
		"pipelock-routes": {Bottles: map[string]*manifest.Bottle{"dev": {Firewall: "pipelock", Egress: &manifest.Egress{Routes: []manifest.Route{{Host: "api.example.com", TokenEnv: "TOKEN"}}}}}, Agents: agent("dev")},
	}
}

func goldenPlan(t *testing.T, m *manifest.Manifest, backend string) (*plan.Plan, *dag.Graph) {
	t.Helper()
	p, err := plan.New(plan.Input{
		Manifest: m, Agent: "demo", Backend: backend, Version: "v0.0.0-test",
		StateRoot: "/state/bot-bottle", Rand: bytes.NewReader([]byte{1, 2, 3, 4}),
		Getenv: func(string) string { return "" }, Home: "/home/u",
	})
	require.NoError(t, err)
	l := &Launch{Plan: p}
	if backend == plan.BackendSmolmachines {
		l.GuestRetry = smolmachines.WarmupRetryPolicy()
	}
	g, err := BuildGraph(l)
	require.NoError(t, err)
	return p, g
}

func TestPlanTextGolden(t *testing.T) {
	for name, m := range goldenManifests() {
		for _, backend := range []string{plan.BackendDocker, plan.BackendSmolmachines} {
			t.Run(name+"/"+backend, func(t *testing.T) {
				p, g := goldenPlan(t, m, backend)
				var buf bytes.Buffer
				require.NoError(t, WritePlanText(&buf, p, g))
				path := filepath.Join("testdata", "plan", name+"-"+backend+".golden")
				if *update {
					require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
					require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "run go test ./steps -run TestPlanTextGolden -update")
				assert.Equal(t, string(want), buf.String())
			})
		}
	}
}

func TestPlanGraphDeps(t *testing.T) {
	deps := func(g *dag.Graph) map[string][]string {
		out := map[string][]string{}
		for _, s := range Describe(g) {
			out[s.ID] = s.Deps
		}
		return out
	}
	_, g := goldenPlan(t, goldenManifests()["full"], plan.BackendDocker)
	d := deps(g)
	// Each step depends only on what it truly needs.
	for _, id := range []string{IDGitUser, IDPrompt, IDSkills} {
		assert.Equal(t, []string{IDBoot}, d[id], id)
	}
	assert.ElementsMatch(t, []string{IDBoot, IDSidecarEgress}, d[IDCA])
	assert.ElementsMatch(t, []string{IDBoot, IDSidecarGitGate}, d[IDGitconfig])
	assert.ElementsMatch(t, []string{IDBoot, IDSidecarSupervise}, d[IDSupervise])
	assert.ElementsMatch(t, []string{IDImage, IDNetwork}, d[IDBoot])
	assert.NotContains(t, d, IDSidecarPipelock)

	_, g = goldenPlan(t, goldenManifests()["full"], plan.BackendSmolmachines)
	d = deps(g)
	// The VM's proxy is a published host port: boot waits for egress.
	assert.ElementsMatch(t, []string{IDImage, IDSidecarEgress}, d[IDBoot])
	for _, s := range Describe(g) {
		if s.ID == IDPrompt {
			require.NotNil(t, s.Retry, "guest steps retry the warm-up race on smolmachines")
		}
	}
}

func TestPlanJSONShape(t *testing.T) {
	p, g := goldenPlan(t, goldenManifests()["full"], plan.BackendSmolmachines)
	var buf bytes.Buffer
	require.NoError(t, WritePlanJSON(&buf, p, g))
	s := buf.String()
	for _, key := range []string{`"agent": "demo"`, `"backend": "smolmachines"`, `"steps"`, `"max_attempts"`, `"timeout_seconds"`, `"deps"`} {
		assert.Contains(t, s, key)
	}
	assert.NotContains(t, s, "Fix the test.", "the prompt stays out of the plan JSON")
}

func TestLastHost(t *testing.T) {
	ip, ok := lastHost("10.213.7.0/24")
	require.True(t, ok)
	assert.Equal(t, "10.213.7.254", ip)
	ip, ok = lastHost("10.213.7.16/28")
	require.True(t, ok)
	assert.Equal(t, "10.213.7.30", ip)
	_, ok = lastHost("")
	assert.False(t, ok)
}

func TestNthLastHost(t *testing.T) {
	ip, ok := nthLastHost("10.213.7.0/24", 2)
	require.True(t, ok)
	assert.Equal(t, "10.213.7.253", ip)
	_, ok = nthLastHost("10.213.7.0/30", 3)
	assert.False(t, ok, "a /30 has two host addresses: the third-last is the network address")
}
