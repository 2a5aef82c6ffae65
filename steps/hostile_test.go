package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
	"github.com/bot-bottle/bot-bottle/manifest"
)

// hostileText returns values the manifest accepts in free-text fields,
// built around marker: a file that exists afterwards would mean a shell
// ran part of a value.
func hostileText(marker string) map[string]string {
	return map[string]string{
		"command substitution": "$(touch " + marker + ")",
		"no spaces":            "$(touch${IFS}" + marker + ")",
		"backticks":            "`touch " + marker + "`",
		"quotes":               `O'Brien "the bot" \ done`,
		"leading option":       "-n --file=" + marker,
		"long option":          "--upload-pack=touch " + marker,
		"config syntax":        "x\" ; [core] # y",
		"odd unicode":          "Zo\u00eb e\u0301 \u202eevil\u202c a\u200bb",
	}
}

// gitOK runs git on the host with argv, failing the test on error.
func gitOK(t *testing.T, env []string, argv ...string) string {
	t.Helper()
	cmd := exec.Command("git", argv...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %q: %s", argv, out)
	return strings.TrimSuffix(string(out), "\n")
}

// The git_user step passes the name and email as whole arguments: run as
// the step built it (minus runuser), git stores each verbatim, whatever
// shell or option syntax it holds, and nothing of it is executed.
func TestGitUserHostileValuesReachGitVerbatim(t *testing.T) {
	_, err := exec.LookPath("git")
	testskip.Unless(t, err == nil, "needs git on the host")
	marker := filepath.Join(t.TempDir(), "pwned")
	for name, v := range hostileText(marker) {
		t.Run(name, func(t *testing.T) {
			user := &manifest.GitUser{Name: v, Email: strings.NewReplacer(" ", "", "<", "", ">", "", "@", "").Replace(v) + "@example.com"}
			m := &manifest.Manifest{
				Bottles: map[string]*manifest.Bottle{"dev": {GitUser: user}},
				Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev"}},
			}
			require.NoError(t, manifest.Validate(m), "the manifest accepts it")
			l, g := fixture{gitUser: user}.launch(t)
			require.NoError(t, NewGitUser(l).Run(context.Background()))
			home := t.TempDir()
			env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + home, "GIT_CONFIG_NOSYSTEM=1"}
			for _, c := range gitConfigCalls(g) {
				require.Equal(t, asNode, c.Argv[:len(asNode)])
				require.Equal(t, "git", c.Argv[len(asNode)])
				gitOK(t, env, c.Argv[len(asNode)+1:]...)
			}
			assert.Equal(t, user.Name, gitOK(t, env, "config", "--global", "--get", "user.name"))
			assert.Equal(t, user.Email, gitOK(t, env, "config", "--global", "--get", "user.email"))
			assert.Len(t, strings.Split(gitOK(t, env, "config", "--global", "--list"), "\n"), 2, "exactly two entries, nothing injected")
			assert.NoFileExists(t, marker)
		})
	}
}

// GitRewrites escapes upstreams for git's config syntax: every upstream
// the manifest accepts reads back from the file exactly, as the only
// entry of its section.
func TestGitRewritesHostileUpstreamsReadBackVerbatim(t *testing.T) {
	_, err := exec.LookPath("git")
	testskip.Unless(t, err == nil, "needs git on the host")
	marker := filepath.Join(t.TempDir(), "pwned")
	var repos []plan.GitRepo
	i := 0
	for _, v := range hostileText(marker) {
		for _, up := range []string{
			"ssh://git@example.com/" + strings.ReplaceAll(v, " ", "%20"),
			"/srv/" + strings.ReplaceAll(v, " ", "_"),
			"git@example.com:x" + strings.ReplaceAll(v, " ", "_"),
		} {
			m := &manifest.Manifest{
				Bottles: map[string]*manifest.Bottle{"dev": {Git: []manifest.GitEntry{{Name: "r", Upstream: up}}}},
				Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev"}},
			}
			if err := manifest.Validate(m); err != nil {
				continue // rejected at validation: nothing to write
			}
			i++
			repos = append(repos, plan.GitRepo{Name: "r" + strings.Repeat("x", i), Upstream: up})
		}
	}
	require.GreaterOrEqual(t, len(repos), 20, "most hostile upstreams are accepted")
	file := filepath.Join(t.TempDir(), "config")
	require.NoError(t, os.WriteFile(file, []byte(GitRewrites("git-gate:9418", repos)), 0o644))
	for _, r := range repos {
		key := "url.git://git-gate:9418/" + r.Name + ".git.insteadof"
		assert.Equal(t, r.Upstream, gitOK(t, nil, "config", "-f", file, "--get", key))
	}
	assert.Len(t, strings.Split(gitOK(t, nil, "config", "-f", file, "--list"), "\n"), len(repos), "one entry per repository, nothing injected")
	assert.NoFileExists(t, marker)
}

// mountRecorder is an engine that records the containers it is asked to
// create (and pretends to start them); nothing else is called by a
// sidecar step on the docker backend without a ReadyWaiter.
type mountRecorder struct {
	backends.Engine
	mu    sync.Mutex
	specs []backends.ContainerSpec
}

func (e *mountRecorder) CreateContainer(_ context.Context, spec backends.ContainerSpec) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.specs = append(e.specs, spec)
	return spec.Name, nil
}

func (e *mountRecorder) StartContainer(context.Context, string) error { return nil }

// A relative IdentityFile ("prefix a relative path with ./", as the
// manifest's own error says) is mounted by its absolute path: the engine
// refuses relative bind sources. Paths with shell and option syntax go
// through whole.
func TestGitGateMountsIdentityFilesByAbsolutePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	rel := "./keys/id $(touch pwned) 'q' \"d\" \u202e"
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "keys"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, rel), []byte("key"), 0o600))
	abs := filepath.Join(dir, "keys/id ~abs")
	require.NoError(t, os.WriteFile(abs, []byte("key"), 0o600))
	l, _ := fixture{backend: plan.BackendDocker, git: []manifest.GitEntry{
		{Name: "rel", Upstream: "git://h.example/r", IdentityFile: rel},
		{Name: "abs", Upstream: "git://h.example/a", IdentityFile: abs},
	}}.launch(t)
	eng := &mountRecorder{}
	l.Engine = eng
	require.NoError(t, NewGitGateSidecar(l).Run(context.Background()))
	require.Len(t, eng.specs, 1)
	sources := map[string]string{}
	for _, m := range eng.specs[0].Mounts {
		assert.True(t, filepath.IsAbs(m.Source), "mount source %q is not absolute", m.Source)
		sources[m.Target] = m.Source
	}
	assert.Equal(t, filepath.Join(dir, rel), sources[gateKeys+"/rel"])
	assert.Equal(t, abs, sources[gateKeys+"/abs"])
	assert.NoFileExists(t, filepath.Join(dir, "pwned"))
}
