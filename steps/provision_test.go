package steps

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/manifest"
)

// call is one thing a provisioning step asked of the guest.
type call struct {
	Kind string // "exec", "cp" or "cpdir"
	Argv []string
	Env  []string
	Src  string
	Dst  string
}

// recordingGuest records every call and answers execs with a scripted
// result (by argv[0]), so the reference cases can assert argv shapes.
type recordingGuest struct {
	mu      sync.Mutex
	calls   []call
	results map[string]backends.ExecResult
	copied  map[string][]byte // src -> content at copy time
}

func (g *recordingGuest) Exec(_ context.Context, req backends.ExecRequest) (backends.ExecResult, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, call{Kind: "exec", Argv: req.Argv, Env: req.Env})
	res := g.results[req.Argv[0]]
	if res.ExitCode != 0 {
		return res, &backends.ExitError{Argv: req.Argv, Result: res}
	}
	return res, nil
}

func (g *recordingGuest) CopyFile(_ context.Context, src, dst string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _ := os.ReadFile(src)
	if g.copied == nil {
		g.copied = map[string][]byte{}
	}
	g.copied[src] = b
	g.calls = append(g.calls, call{Kind: "cp", Src: src, Dst: dst})
	return nil
}

func (g *recordingGuest) CopyDir(_ context.Context, src, dst string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, call{Kind: "cpdir", Src: src, Dst: dst})
	return nil
}

func (g *recordingGuest) execs() [][]string {
	var out [][]string
	for _, c := range g.calls {
		if c.Kind == "exec" {
			out = append(out, c.Argv)
		}
	}
	return out
}

func (g *recordingGuest) copies() []call {
	var out []call
	for _, c := range g.calls {
		if c.Kind != "exec" {
			out = append(out, c)
		}
	}
	return out
}

// fixture mirrors the reference tests' plan builder: bottle "dev", agent
// "demo", smolmachines addresses on host loopback.
type fixture struct {
	prompt   string
	skills   []string
	git      []manifest.GitEntry
	gitUser  *manifest.GitUser
	copyCwd  bool
	cwd      string
	routes   []manifest.Route
	firewall string
	super    bool
	backend  string
	env      map[string]string
}

func (f fixture) launch(t *testing.T) (*Launch, *recordingGuest) {
	t.Helper()
	b := &manifest.Bottle{Git: f.git, GitUser: f.gitUser, Supervise: f.super, Firewall: f.firewall}
	if len(f.routes) > 0 {
		b.Egress = &manifest.Egress{Routes: f.routes}
	}
	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": b},
		Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev", Prompt: f.prompt, Skills: f.skills}},
	}
	backend := f.backend
	if backend == "" {
		backend = plan.BackendSmolmachines
	}
	p, err := plan.New(plan.Input{
		Manifest: m, Agent: "demo", Backend: backend, CopyCwd: f.copyCwd, UserCwd: f.cwd,
		StateRoot: t.TempDir(), Rand: rand.Reader, Home: "/home/u",
		Getenv: func(k string) string { return f.env[k] },
	})
	require.NoError(t, err)
	g := &recordingGuest{results: map[string]backends.ExecResult{
		"sh": {Stdout: "Updating certificates in /etc/ssl/certs...\n1 added, 0 removed; done.\n"},
	}}
	l := &Launch{Plan: p}
	l.setGuest(g)
	l.SetSidecarAddr(plan.RoleGitGate, "127.0.0.1:55555")
	l.SetSidecarAddr(plan.RoleSupervise, "127.0.0.1:55556")
	return l, g
}

func stepIDs(l *Launch) []string {
	var ids []string
	for _, s := range Build(l) {
		ids = append(ids, s.ID())
	}
	return ids
}

func TestPromptCopiesThenChownsAndChmods(t *testing.T) {
	for _, prompt := range []string{"You are a helpful assistant.", ""} {
		l, g := fixture{prompt: prompt}.launch(t)
		require.NoError(t, NewPrompt(l).Run(context.Background()))
		// Copied even when empty: the launch command reads it unconditionally.
		require.Equal(t, []call{{Kind: "cp", Src: l.Plan.PromptFile, Dst: "/home/node/.claude-bottle-prompt.txt"}}, g.copies())
		assert.Equal(t, prompt, string(g.copied[l.Plan.PromptFile]))
		assert.Equal(t, [][]string{
			{"chown", "node:node", "/home/node/.claude-bottle-prompt.txt"},
			{"chmod", "600", "/home/node/.claude-bottle-prompt.txt"},
		}, g.execs())
		fi, err := os.Stat(l.Plan.PromptFile)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the staged prompt is private on the host too")
	}
}

func TestSkillsAbsentFromGraphWithoutSkills(t *testing.T) {
	l, _ := fixture{}.launch(t)
	assert.NotContains(t, stepIDs(l), IDSkills)
}

func skillDirs(t *testing.T, names ...string) string {
	root := t.TempDir()
	for _, n := range names {
		require.NoError(t, os.MkdirAll(filepath.Join(root, n), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, n, "SKILL.md"), []byte(n), 0o644))
	}
	return root
}

func TestSkillsMkdirOnceThenReplaceAndChownEach(t *testing.T) {
	root := skillDirs(t, "init-prd", "verify")
	l, g := fixture{skills: []string{"init-prd", "verify"}, env: map[string]string{"BOT_BOTTLE_SKILLS_DIR": root}}.launch(t)
	require.NoError(t, NewSkills(l).Run(context.Background()))
	ex := g.execs()
	// mkdir -p once + (rm -rf + chown) per skill = 5 execs.
	require.Len(t, ex, 5)
	assert.Equal(t, []string{"mkdir", "-p", "/home/node/.claude/skills"}, ex[0])
	assert.Equal(t, []call{
		{Kind: "cpdir", Src: filepath.Join(root, "init-prd"), Dst: "/home/node/.claude/skills/init-prd"},
		{Kind: "cpdir", Src: filepath.Join(root, "verify"), Dst: "/home/node/.claude/skills/verify"},
	}, g.copies())
	var chowns []string
	for _, a := range ex {
		if a[0] == "chown" {
			assert.Equal(t, []string{"chown", "-R", "node:node"}, a[:3])
			chowns = append(chowns, a[len(a)-1])
		}
	}
	assert.ElementsMatch(t, []string{"/home/node/.claude/skills/init-prd", "/home/node/.claude/skills/verify"}, chowns)
	// Each skill is replaced, not merged: rm -rf precedes its copy.
	assert.Equal(t, []string{"rm", "-rf", "/home/node/.claude/skills/init-prd"}, ex[1])
}

func TestSkillsGuestDirOverridableByEnv(t *testing.T) {
	root := skillDirs(t, "init-prd")
	l, g := fixture{skills: []string{"init-prd"}, env: map[string]string{
		"BOT_BOTTLE_SKILLS_DIR":          root,
		"CLAUDE_BOTTLE_GUEST_SKILLS_DIR": "/opt/skills",
	}}.launch(t)
	require.NoError(t, NewSkills(l).Run(context.Background()))
	assert.Equal(t, "/opt/skills/init-prd", g.copies()[0].Dst)
	assert.Equal(t, []string{"mkdir", "-p", "/opt/skills"}, g.execs()[0])
}

func TestSkillsMissingSkillFailsNamingIt(t *testing.T) {
	root := skillDirs(t, "present")
	l, g := fixture{skills: []string{"present", "init-prd"}, env: map[string]string{"BOT_BOTTLE_SKILLS_DIR": root}}.launch(t)
	err := NewSkills(l).Run(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"init-prd"`)
	assert.NotContains(t, err.Error(), `"present"`)
	assert.Empty(t, g.calls, "nothing touches the guest when a skill is missing")
}

func writeCert(t *testing.T, name string) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"), 0o644))
	return p
}

func TestCAFirewallCertWhenNoRoutes(t *testing.T) {
	l, g := fixture{firewall: "pipelock"}.launch(t)
	pipelockCA, egressCA := writeCert(t, "pipelock.pem"), writeCert(t, "egress.pem")
	l.SetCACert(plan.RolePipelock, pipelockCA)
	l.SetCACert(plan.RoleEgress, egressCA)
	s := NewCA(l)
	assert.Equal(t, []string{IDBoot, IDSidecarPipelock}, s.Deps())
	require.NoError(t, s.Run(context.Background()))
	assert.Equal(t, []call{{Kind: "cp", Src: pipelockCA, Dst: plan.GuestCAPath}}, g.copies())
	// chmod, chown and update-ca-certificates fold into one exec.
	ex := g.execs()
	require.Len(t, ex, 1)
	assert.Equal(t, []string{"sh", "-c"}, ex[0][:2])
	assert.Contains(t, ex[0][2], "chmod 644")
	assert.Contains(t, ex[0][2], "update-ca-certificates")
	// The path travels as an argument, never inside the script.
	assert.NotContains(t, ex[0][2], plan.GuestCAPath)
	assert.Equal(t, plan.GuestCAPath, ex[0][len(ex[0])-1])
}

func TestCAEgressCertWhenRoutesDeclared(t *testing.T) {
	for _, fw := range []string{"pipelock", "builtin"} {
		l, g := fixture{firewall: fw, routes: []manifest.Route{{Host: "api.anthropic.com"}}}.launch(t)
		pipelockCA, egressCA := writeCert(t, "pipelock.pem"), writeCert(t, "egress.pem")
		l.SetCACert(plan.RolePipelock, pipelockCA)
		l.SetCACert(plan.RoleEgress, egressCA)
		s := NewCA(l)
		assert.Equal(t, []string{IDBoot, IDSidecarEgress}, s.Deps())
		require.NoError(t, s.Run(context.Background()))
		// Egress is the agent's first hop, so its CA is the one installed.
		assert.Equal(t, []call{{Kind: "cp", Src: egressCA, Dst: plan.GuestCAPath}}, g.copies(), fw)
	}
}

func TestCAFailsWhenCertMissing(t *testing.T) {
	l, g := fixture{}.launch(t)
	l.SetCACert(plan.RoleEgress, filepath.Join(t.TempDir(), "does-not-exist.pem"))
	err := NewCA(l).Run(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing")
	assert.Empty(t, g.calls)
}

func TestCAFailsUnlessOneAdded(t *testing.T) {
	l, g := fixture{}.launch(t)
	l.SetCACert(plan.RoleEgress, writeCert(t, "egress.pem"))
	g.results["sh"] = backends.ExecResult{Stdout: "0 added, 0 removed; done.\n"}
	err := NewCA(l).Run(context.Background())
	var ce *CAInstallError
	require.ErrorAs(t, err, &ce)
}

func TestGitStepsAbsentWithoutCwdOrEntries(t *testing.T) {
	l, _ := fixture{}.launch(t)
	ids := stepIDs(l)
	assert.NotContains(t, ids, IDWorkspace)
	assert.NotContains(t, ids, IDGitconfig)
	assert.NotContains(t, ids, IDSidecarGitGate)
}

func TestWorkspaceCopiesCwdGit(t *testing.T) {
	cwd := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(cwd, ".git"), 0o755))
	l, g := fixture{copyCwd: true, cwd: cwd}.launch(t)
	assert.Contains(t, stepIDs(l), IDWorkspace)
	require.NoError(t, NewWorkspace(l).Run(context.Background()))
	assert.Equal(t, []call{{Kind: "cpdir", Src: cwd + "/.git", Dst: "/home/node/workspace/.git"}}, g.copies())
	assert.Contains(t, g.execs(), []string{"mkdir", "-p", "/home/node/workspace"})
	assert.Contains(t, g.execs(), []string{"chown", "-R", "node:node", "/home/node/workspace/.git"})
}

func TestWorkspaceAbsentWithoutCopyCwd(t *testing.T) {
	l, _ := fixture{copyCwd: false, cwd: t.TempDir()}.launch(t)
	assert.NotContains(t, stepIDs(l), IDWorkspace)
}

func TestGitconfigRewritesToGateOnHostLoopback(t *testing.T) {
	l, g := fixture{git: []manifest.GitEntry{{Name: "claude-bottle", Upstream: "ssh://git@host/repo.git", IdentityFile: "~/.ssh/id_ed25519"}}}.launch(t)
	l.SetSidecarAddr(plan.RoleGitGate, "127.0.0.1:9418")
	require.NoError(t, NewGitconfig(l).Run(context.Background()))
	cp := g.copies()
	require.Len(t, cp, 1)
	assert.Equal(t, filepath.Join(l.Plan.StateDir, "agent"), filepath.Dir(cp[0].Src), "staged in the bottle's state dir")
	content := string(g.copied[cp[0].Src])
	assert.Contains(t, content, `[url "git://127.0.0.1:9418/claude-bottle.git"]`)
	assert.Contains(t, content, "\tinsteadOf = ssh://git@host/repo.git")
	assert.Equal(t, GuestGitRewrites, cp[0].Dst)
	assert.Equal(t, [][]string{{"chown", "-R", "node:node", "/home/node/.config"}}, g.execs())
}

func TestGitconfigQuotesHostileValues(t *testing.T) {
	out := GitRewrites("gate:9418", []plan.GitRepo{{Name: "r", Upstream: `/srv/a "b"; #c`}})
	assert.Contains(t, out, `insteadOf = "/srv/a \"b\"; #c"`)
}

func gitConfigCalls(g *recordingGuest) []call {
	var out []call
	for _, c := range g.calls {
		if c.Kind == "exec" && strings.Contains(strings.Join(c.Argv, " "), "git config") {
			out = append(out, c)
		}
	}
	return out
}

func TestGitUser(t *testing.T) {
	cases := []struct {
		name string
		user *manifest.GitUser
		want [][]string // argv after `runuser -u node -- git config --global`
	}{
		{"none", nil, nil},
		{"empty", &manifest.GitUser{}, nil},
		{"both", &manifest.GitUser{Name: "Eric Bauerfeld", Email: "eric@dideric.is"}, [][]string{{"user.name", "Eric Bauerfeld"}, {"user.email", "eric@dideric.is"}}},
		{"name only", &manifest.GitUser{Name: "Bot"}, [][]string{{"user.name", "Bot"}}},
		{"email only", &manifest.GitUser{Email: "bot@example.com"}, [][]string{{"user.email", "bot@example.com"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, g := fixture{gitUser: tc.user}.launch(t)
			if tc.want == nil {
				assert.NotContains(t, stepIDs(l), IDGitUser)
				return
			}
			require.Contains(t, stepIDs(l), IDGitUser)
			require.NoError(t, NewGitUser(l).Run(context.Background()))
			calls := gitConfigCalls(g)
			require.Len(t, calls, len(tc.want))
			for i, c := range calls {
				assert.Equal(t, []string{"runuser", "-u", "node", "--", "git", "config", "--global"}, c.Argv[:7])
				assert.Equal(t, tc.want[i], c.Argv[7:])
				// HOME forced, or --global lands in /root/.gitconfig.
				assert.Contains(t, c.Env, "HOME=/home/node")
				assert.Contains(t, c.Env, "USER=node")
				// and pinned to ~/.gitconfig, away from the gate's rewrites.
				assert.Contains(t, c.Env, "GIT_CONFIG_GLOBAL=/home/node/.gitconfig")
			}
		})
	}
}

func TestSuperviseAbsentWhenNotEnabled(t *testing.T) {
	l, _ := fixture{}.launch(t)
	assert.NotContains(t, stepIDs(l), IDSupervise)
	assert.NotContains(t, stepIDs(l), IDSidecarSupervise)
}

func TestSuperviseRegistersMCPServerAsNode(t *testing.T) {
	l, g := fixture{super: true}.launch(t)
	l.SetSidecarAddr(plan.RoleSupervise, "127.0.0.1:9100")
	require.NoError(t, NewSupervise(l).Run(context.Background()))
	assert.Equal(t, [][]string{{
		"runuser", "-u", "node", "--",
		"env", "HOME=/home/node",
		"claude", "mcp", "add",
		"--scope", "user",
		"--transport", "http",
		"supervise",
		"http://127.0.0.1:9100/mcp",
	}}, g.execs())
}

func TestSuperviseFailureIsAWarning(t *testing.T) {
	l, g := fixture{super: true}.launch(t)
	g.results["runuser"] = backends.ExecResult{ExitCode: 1, Stderr: "boom"}
	assert.NoError(t, NewSupervise(l).Run(context.Background()))
}

func TestSuperviseWarmupRaceIsRetriedNotSwallowed(t *testing.T) {
	l, g := fixture{super: true}.launch(t)
	l.GuestRetry = &dag.RetryPolicy{MaxAttempts: 3, Retryable: func(err error) bool {
		var ee *backends.ExitError
		return asExit(err, &ee) && ee.Result.ExitCode == 137
	}}
	g.results["runuser"] = backends.ExecResult{ExitCode: 137}
	assert.Error(t, NewSupervise(l).Run(context.Background()))
}
