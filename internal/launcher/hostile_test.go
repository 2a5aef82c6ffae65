package launcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// hostileUpstreamScript serves, over git daemon, a bare repository at the
// path given as $1 (a hostile one). The script is constant; the path is
// an argument.
const hostileUpstreamScript = `set -e
git init -q --bare -b main "/srv/$1"
git clone -q "/srv/$1" /tmp/seed
git -C /tmp/seed -c user.name=up -c user.email=up@example.com commit -q --allow-empty -m seed
git -C /tmp/seed push -q origin HEAD:main
exec git daemon --reuseaddr --export-all --enable=receive-pack --base-path=/srv --listen=0.0.0.0
`

// rawRun execs argv in g and returns stdout exactly, failing on error.
func rawRun(t *testing.T, g backends.Guest, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := g.Exec(ctx, backends.ExecRequest{Argv: argv})
	require.NoError(t, err, "%v: %s", argv, res.Stderr)
	return res.Stdout
}

// TestHostileManifestValuesAreRefusedBeforeAnything hands Run manifests
// that validation exists to stop: each fails before any side effect with
// an error naming the field. No engine is configured: reaching one would
// fail differently.
func TestHostileManifestValuesAreRefusedBeforeAnything(t *testing.T) {
	base := func() *manifest.Manifest {
		return &manifest.Manifest{
			Bottles: map[string]*manifest.Bottle{"dev": {
				Git:     []manifest.GitEntry{{Name: "repo", Upstream: "git://upstream.test/repo.git"}},
				GitUser: &manifest.GitUser{Name: "Bot"},
				Env:     map[string]string{"A": "b"},
			}},
			Agents: map[string]*manifest.Agent{"hostile": {Bottle: "dev"}},
		}
	}
	for name, tc := range map[string]struct {
		set  func(m *manifest.Manifest)
		path string
	}{
		"a 10 MB prompt":          {func(m *manifest.Manifest) { m.Agents["hostile"].Prompt = strings.Repeat("p", 10<<20) }, "agents.hostile.prompt"},
		"an upload-pack option":   {func(m *manifest.Manifest) { m.Bottles["dev"].Git[0].Upstream = "--upload-pack=touch /tmp/pwned" }, "bottles.dev.git[0].Upstream"},
		"a ProxyCommand option":   {func(m *manifest.Manifest) { m.Bottles["dev"].Git[0].Upstream = "-oProxyCommand=touch /tmp/pwned" }, "bottles.dev.git[0].Upstream"},
		"an ssh host option":      {func(m *manifest.Manifest) { m.Bottles["dev"].Git[0].Upstream = "ssh://-oProxyCommand=touch/r" }, "bottles.dev.git[0].Upstream"},
		"git's ext transport":     {func(m *manifest.Manifest) { m.Bottles["dev"].Git[0].Upstream = "ext::sh -c touch% /tmp/pwned" }, "bottles.dev.git[0].Upstream"},
		"an identity option":      {func(m *manifest.Manifest) { m.Bottles["dev"].Git[0].IdentityFile = "-oProxyCommand=x" }, "bottles.dev.git[0].IdentityFile"},
		"a name the gate refuses": {func(m *manifest.Manifest) { m.Bottles["dev"].Git[0].Name = "_hidden.git" }, "bottles.dev.git[0].Name"},
		"a config-injecting name": {func(m *manifest.Manifest) {
			m.Bottles["dev"].GitUser.Name = "x\n[core]\n\tsshCommand = touch /tmp/pwned"
		}, "bottles.dev.git_user.name"},
		"a NUL in env":       {func(m *manifest.Manifest) { m.Bottles["dev"].Env["A"] = "a\x00b" }, "bottles.dev.env.A"},
		"a 1 MiB env value":  {func(m *manifest.Manifest) { m.Bottles["dev"].Env["A"] = strings.Repeat("v", 1<<20) }, "bottles.dev.env.A"},
		"a reserved env":     {func(m *manifest.Manifest) { m.Bottles["dev"].Env["GIT_SSL_CAINFO"] = "/dev/null" }, "bottles.dev.env.GIT_SSL_CAINFO"},
		"a traversing skill": {func(m *manifest.Manifest) { m.Agents["hostile"].Skills = []string{"../../.ssh"} }, "agents.hostile.skills[0]"},
		"an RTL host":        {func(m *manifest.Manifest) { m.Bottles["dev"].Allow = []string{"moc.\u202eexample.com"} }, "bottles.dev.allow[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			m := base()
			tc.set(m)
			root := t.TempDir()
			_, res, err := Run(context.Background(), Options{Manifest: m, Agent: "hostile", Backend: plan.BackendDocker, StateRoot: root, Getenv: env{}.get})
			require.Error(t, err)
			assert.Nil(t, res, "no graph ran")
			var pre *PreflightError
			assert.True(t, errors.As(err, &pre), "a preflight error: %v", err)
			assert.Contains(t, err.Error(), tc.path+":")
			assert.Less(t, len(err.Error()), 2048, "the error is short")
			entries, _ := os.ReadDir(root)
			assert.Empty(t, entries, "nothing was created under the state root")
		})
	}
}

// TestDockerHostileValuesArriveVerbatim launches a bottle whose accepted
// values are full of shell, option and config syntax and odd Unicode: each
// arrives where it goes byte for byte, and nothing of it ever runs.
func TestDockerHostileValuesArriveVerbatim(t *testing.T) {
	marker := "/tmp/bbt-pwned-" + randomHex(t, 6)
	sub := "$(touch " + marker + ")"
	subNoSpace := "$(touch${IFS}" + marker + ")"
	odd := "\u202eevil\u202c a\u200bb e\u0301 Zo\u00eb"
	prompt := "--dangerously-skip-permissions " + sub + " `touch " + marker + "` 'q' \"d\" ;|&\n-- " + odd + "\n"
	userName := "-n --file=" + marker + " " + sub + ` O'Brien "the bot" \ ` + odd
	userEmail := "-x" + subNoSpace + `'q"@example.com`
	envValue := sub + "\n\"'`;|&<>*?~ " + odd + " -rf --"
	repoPath := "h" + subNoSpace + `;"q'.git`
	upstream := "git://upstream.test/" + repoPath
	skill := "._odd-skill.v1"

	// A relative IdentityFile with shell syntax in it, resolved against
	// the cwd like the host check resolves it.
	cwd := t.TempDir()
	t.Chdir(cwd)
	keyRel := "./keys/k $(id) `id` 'q' \"d\" " + odd
	require.NoError(t, os.MkdirAll(filepath.Join(cwd, "keys"), 0o700))
	keyContent := "not a key, only mounted: " + randomHex(t, 8) + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(cwd, keyRel), []byte(keyContent), 0o600))
	skills := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(skills, skill), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(skills, skill, "SKILL.md"), []byte("# odd\n"), 0o644))

	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Git:     []manifest.GitEntry{{Name: "weird-repo", Upstream: upstream, IdentityFile: keyRel}},
			GitUser: &manifest.GitUser{Name: userName, Email: userEmail},
			Env:     map[string]string{"HOSTILE": envValue, "LEADING_DASH": "--help"},
			Allow:   []string{"upstream.test"},
		}},
		Agents: map[string]*manifest.Agent{"hostile": {Bottle: "dev", Prompt: prompt, Skills: []string{skill}}},
	}
	require.NoError(t, manifest.Validate(m), "every value here is accepted")
	o, eng := dockerOptions(t, m, "hostile", env{manifest.SkillsDirEnv: skills})
	ctx := context.Background()

	testNet := testNetwork(t, eng, "bbt-hostnet")
	up := server(t, eng, testNet, nil, "sh", "-c", hostileUpstreamScript, "sh", repoPath)
	var slug string
	var p *plan.Plan
	o.OnPlanned = func(pl *plan.Plan) { p, slug = pl, pl.Slug }
	o.Wrap = func(s dag.Step) dag.Step {
		if s.ID() != steps.IDSidecarGitGate {
			return s
		}
		return hook{s, func(ctx context.Context) error { return connect(ctx, eng, up, p.Names.Outside, "upstream.test") }}
	}
	removeAtEnd(t, o, &slug)
	launched, _, err := Run(ctx, o)
	require.NoError(t, err)
	g := eng.Guest(launched.Plan.Names.Agent)
	node := func(argv ...string) []string { return append(append([]string{}, asAgent...), argv...) }

	t.Run("prompt", func(t *testing.T) {
		assert.Equal(t, prompt, rawRun(t, g, "cat", plan.GuestPromptPath))
	})
	t.Run("git_user", func(t *testing.T) {
		assert.Equal(t, userName+"\n", rawRun(t, g, node("git", "config", "--global", "--get", "user.name")...))
		assert.Equal(t, userEmail+"\n", rawRun(t, g, node("git", "config", "--global", "--get", "user.email")...))
		assert.Len(t, strings.Split(strings.TrimSpace(rawRun(t, g, node("git", "config", "--global", "--list")...)), "\n"), 2,
			"two entries in ~/.gitconfig, nothing injected")
	})
	t.Run("env", func(t *testing.T) {
		assert.Equal(t, envValue+"\n", rawRun(t, g, node("printenv", "HOSTILE")...))
		assert.Equal(t, "--help\n", rawRun(t, g, node("printenv", "LEADING_DASH")...))
	})
	t.Run("skill", func(t *testing.T) {
		assert.Equal(t, "# odd\n", rawRun(t, g, "cat", plan.GuestSkillsDir+"/"+skill+"/SKILL.md"))
	})
	t.Run("upstream: rewritten verbatim, relayed by the gate", func(t *testing.T) {
		assert.Equal(t, upstream+"\n", rawRun(t, g, node("git", "config", "--get", "url.git://git-gate:9418/weird-repo.git.insteadof")...))
		rawRun(t, g, node("git", "clone", "-q", upstream, "/home/node/weird")...)
		assert.Equal(t, "seed\n", rawRun(t, g, node("git", "-C", "/home/node/weird", "log", "-1", "--format=%s")...))
		rawRun(t, g, node("git", "-C", "/home/node/weird", "commit", "-q", "--allow-empty", "-m", "pushed "+sub)...)
		rawRun(t, g, node("git", "-C", "/home/node/weird", "push", "-q", "origin", "HEAD:main")...)
		assert.Equal(t, "pushed "+sub+"\n", rawRun(t, eng.Guest(up), "git", "--git-dir", "/srv/"+repoPath, "log", "-1", "--format=%s", "main"))
	})
	t.Run("identity file: mounted into the gate whole", func(t *testing.T) {
		assert.Equal(t, keyContent, rawRun(t, eng.Guest(p.Names.GitGate), "cat", "/etc/bot-bottle/keys/weird-repo"))
	})
	t.Run("nothing ran", func(t *testing.T) {
		for _, c := range []string{p.Names.Agent, p.Names.GitGate, p.Names.Egress, up} {
			code, _ := tryRun(t, eng.Guest(c), "test", "-e", marker)
			assert.NotEqual(t, 0, code, "%s exists in %s", marker, c)
		}
		assert.NoFileExists(t, marker)
		// Control: the probe sees a marker that does exist.
		rawRun(t, g, "touch", marker)
		code, _ := tryRun(t, g, "test", "-e", marker)
		assert.Equal(t, 0, code)
	})
}
