package plan

import (
	"bytes"
	"crypto/rand"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/manifest"
)

func testManifest() *manifest.Manifest {
	return &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Git:       []manifest.GitEntry{{Name: "app", Upstream: "ssh://git@h/app.git", IdentityFile: "~/.ssh/deploy"}},
			Supervise: true,
			Egress:    &manifest.Egress{Routes: []manifest.Route{{Host: "api.example.com", TokenEnv: "TOKEN"}, {Host: "plain.example.com"}}},
			Env:       map[string]string{"EDITOR": "vi"},
		}},
		Agents: map[string]*manifest.Agent{"demo": {Bottle: "dev", Prompt: "hi", Skills: []string{"verify"}}},
	}
}

func TestSlugIsAgentPlusFiveBase32(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		p, err := New(Input{Manifest: testManifest(), Agent: "demo", StateRoot: "/s", Rand: rand.Reader})
		require.NoError(t, err)
		assert.Regexp(t, regexp.MustCompile(`^demo-[a-z2-7]{5}$`), p.Slug)
		seen[p.Slug] = true
	}
	assert.Greater(t, len(seen), 190, "slugs are random")
}

func TestPlanIsDeterministicWithInjectedRandomness(t *testing.T) {
	in := func() Input {
		return Input{Manifest: testManifest(), Agent: "demo", Backend: BackendDocker, StateRoot: "/state/bot-bottle",
			Rand: bytes.NewReader([]byte{9, 9, 9, 9}), Home: "/home/u", Version: "v1"}
	}
	a, err := New(in())
	require.NoError(t, err)
	b, err := New(in())
	require.NoError(t, err)
	assert.Equal(t, a, b)
	assert.Equal(t, "/state/bot-bottle/"+a.Slug, a.StateDir)
	assert.Equal(t, "/state/bot-bottle/"+a.Slug+"/agent/prompt.txt", a.PromptFile)
	assert.Equal(t, "bot-bottle-"+a.Slug+"-agent", a.Names.Agent)
	assert.Equal(t, "bot-bottle-"+a.Slug+"-bundle", a.Names.Bundle)
	assert.Equal(t, "bot-bottle-"+a.Slug+"-git-gate", a.Names.GitGate)
	assert.Empty(t, a.Names.Pipelock)
	assert.Empty(t, a.Names.Machine, "docker bottles have no machine")
	assert.Equal(t, "/home/u/.ssh/deploy", a.Git[0].IdentityFile, "~ expands on the host")
	assert.Equal(t, "/home/u/.claude/skills/verify", a.Skills[0].HostDir)
	assert.Equal(t, "/home/node/.claude/skills/verify", a.Skills[0].GuestDir)
	assert.Equal(t, map[string]string{
		"bot-bottle.slug": a.Slug, "bot-bottle.agent": "demo", "bot-bottle.version": "v1",
		"bot-bottle.backend": "docker", "bot-bottle.role": "egress",
	}, a.Labels(RoleEgress))
}

func TestRouteDefaultsApplyOnlyWithAToken(t *testing.T) {
	p, err := New(Input{Manifest: testManifest(), Agent: "demo", StateRoot: "/s"})
	require.NoError(t, err)
	assert.Equal(t, Route{Host: "api.example.com", TokenEnv: "TOKEN", Header: "Authorization", Format: "Bearer {token}"}, p.Routes[0])
	assert.Equal(t, Route{Host: "plain.example.com"}, p.Routes[1])
	assert.True(t, p.HasRoutes())
	assert.Equal(t, RoleEgress, p.CASidecar())
}

func TestEnvironmentOverridesSkillDirs(t *testing.T) {
	env := map[string]string{"BOT_BOTTLE_SKILLS_DIR": "/skills", GuestSkillsDirEnv: "/opt/skills"}
	p, err := New(Input{Manifest: testManifest(), Agent: "demo", StateRoot: "/s", Getenv: func(k string) string { return env[k] }})
	require.NoError(t, err)
	assert.Equal(t, "/skills/verify", p.Skills[0].HostDir)
	assert.Equal(t, "/opt/skills/verify", p.Skills[0].GuestDir)
}

func TestSmolmachinesAndPipelockNames(t *testing.T) {
	m := testManifest()
	m.Bottles["dev"].Firewall = manifest.FirewallPipelock
	m.Bottles["dev"].Egress = nil
	p, err := New(Input{Manifest: m, Agent: "demo", Backend: BackendSmolmachines, StateRoot: "/s", CopyCwd: true, UserCwd: "/work/repo"})
	require.NoError(t, err)
	assert.Equal(t, "bot-bottle-"+p.Slug, p.Names.Machine)
	assert.Equal(t, "bot-bottle-"+p.Slug+"-pipelock", p.Names.Pipelock)
	assert.Equal(t, RolePipelock, p.CASidecar(), "without routes the firewall's CA is the agent's first hop")
	assert.Equal(t, "/work/repo/.git", p.CopyCwdGit)
}

func TestPlanRefusesWhatItCannotPlan(t *testing.T) {
	_, err := New(Input{Manifest: testManifest(), Agent: "nope", StateRoot: "/s"})
	assert.ErrorContains(t, err, `agent "nope" is not in the manifest (agents: demo)`)
	_, err = New(Input{Manifest: testManifest(), Agent: "demo", Backend: "vmware", StateRoot: "/s"})
	assert.ErrorContains(t, err, "want docker or smolmachines")
	_, err = New(Input{Agent: "demo"})
	assert.Error(t, err)
	_, err = New(Input{Manifest: testManifest(), Agent: "demo", Rand: bytes.NewReader(nil)})
	assert.ErrorContains(t, err, "randomness")
}
