package gitgate

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gitRun runs git in dir with an isolated config and returns combined
// output; it fails the test on error unless allowFail.
func gitRun(t *testing.T, dir string, allowFail bool, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "user.name=Agent", "-c", "user.email=agent@example.test", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil && !allowFail {
		t.Fatalf("git %v in %s: %v\n%s", args, dir, err, out.String())
	}
	return out.String(), err
}

func revParse(t *testing.T, dir, rev string) string {
	out, _ := gitRun(t, dir, false, "rev-parse", rev)
	return strings.TrimSpace(out)
}

type gateFixture struct {
	t        *testing.T
	root     string
	upstream string // bare upstream path
	srv      *Server
	cfg      Config
	logs     *bytes.Buffer
	logMu    *sync.Mutex
}

// newGate makes an upstream with one commit on main and a gate over it.
func newGate(t *testing.T, allowForce ...bool) *gateFixture {
	t.Helper()
	root := t.TempDir()
	up := filepath.Join(root, "upstream", "proj.git")
	require.NoError(t, os.MkdirAll(filepath.Dir(up), 0o755))
	gitRun(t, root, false, "init", "--bare", "-b", "main", up)
	seed := filepath.Join(root, "seed")
	gitRun(t, root, false, "clone", up, seed)
	require.NoError(t, os.WriteFile(filepath.Join(seed, "README"), []byte("hello\n"), 0o644))
	gitRun(t, seed, false, "add", "README")
	gitRun(t, seed, false, "commit", "-m", "initial")
	gitRun(t, seed, false, "push", "origin", "main")
	gitRun(t, seed, false, "push", "origin", "main:refs/heads/feature")

	repos := []Repo{{Name: "proj", Upstream: "file://" + up, AllowForce: len(allowForce) > 0 && allowForce[0]}}
	cfg := Config{Listen: "127.0.0.1:0", BasePath: filepath.Join(root, "mirrors"), Repos: repos}
	logs := &bytes.Buffer{}
	mu := &sync.Mutex{}
	srv, err := New(cfg, Options{
		Logger: slog.New(slog.NewJSONHandler(lockedWriter{mu, logs}, nil)),
		Self:   os.Args[0],
	})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(cfg.BasePath, 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, srv.Start(ctx))
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return &gateFixture{t: t, root: root, upstream: up, srv: srv, cfg: cfg, logs: logs, logMu: mu}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (g *gateFixture) url(name string) string { return "git://" + g.srv.Addr() + "/" + name + ".git" }

// clone makes an agent-side clone through the gate.
func (g *gateFixture) clone(name string) string {
	dir := filepath.Join(g.root, "agent-"+name+"-"+time.Now().Format("150405.000000000"))
	gitRun(g.t, g.root, false, "clone", g.url(name), dir)
	return dir
}

func commitFile(t *testing.T, dir, file, content, msg string) {
	require.NoError(t, os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644))
	gitRun(t, dir, false, "add", file)
	gitRun(t, dir, false, "commit", "-m", msg)
}

func TestCloneCommitPushLandsUpstream(t *testing.T) {
	g := newGate(t)
	work := g.clone("proj")
	assert.Equal(t, revParse(t, g.upstream, "main"), revParse(t, work, "HEAD"))
	commitFile(t, work, "a.txt", "a\n", "add a")
	out, _ := gitRun(t, work, false, "push", "origin", "main")
	assert.Contains(t, out, "pushed to upstream proj")
	head := revParse(t, work, "HEAD")
	assert.Equal(t, head, revParse(t, g.upstream, "main"), "upstream has the commit")
	assert.Equal(t, head, revParse(t, g.cfg.MirrorPath("proj"), "main"), "mirror has it too")

	// A new branch and a tag go through as well.
	gitRun(t, work, false, "checkout", "-b", "topic")
	commitFile(t, work, "b.txt", "b\n", "add b")
	gitRun(t, work, false, "tag", "v1")
	gitRun(t, work, false, "push", "origin", "topic", "v1")
	assert.Equal(t, revParse(t, work, "topic"), revParse(t, g.upstream, "topic"))
	assert.Equal(t, revParse(t, work, "v1"), revParse(t, g.upstream, "v1"))
}

func TestForcePushAndDefaultBranchDeletionRefused(t *testing.T) {
	g := newGate(t)
	work := g.clone("proj")
	commitFile(t, work, "a.txt", "a\n", "add a")
	gitRun(t, work, false, "push", "origin", "main")
	before := revParse(t, g.upstream, "main")

	gitRun(t, work, false, "reset", "--hard", "HEAD~1")
	commitFile(t, work, "c.txt", "c\n", "diverge")
	out, err := gitRun(t, work, true, "push", "--force", "origin", "main")
	require.Error(t, err)
	assert.Contains(t, out, "refusing a non-fast-forward (force) push to refs/heads/main")
	assert.Equal(t, before, revParse(t, g.upstream, "main"))
	assert.Equal(t, before, revParse(t, g.cfg.MirrorPath("proj"), "main"))

	out, err = gitRun(t, work, true, "push", "origin", ":main")
	require.Error(t, err)
	assert.Contains(t, out, "refusing to delete refs/heads/main")
	assert.Equal(t, before, revParse(t, g.upstream, "main"))

	// Deleting another branch is fine and reaches the upstream.
	gitRun(t, work, false, "push", "origin", ":feature")
	_, err = gitRun(t, g.upstream, true, "rev-parse", "--verify", "refs/heads/feature")
	assert.Error(t, err, "feature deleted upstream")
}

func TestAllowForcePermitsForcePush(t *testing.T) {
	g := newGate(t, true)
	work := g.clone("proj")
	commitFile(t, work, "a.txt", "a\n", "add a")
	gitRun(t, work, false, "push", "origin", "main")
	gitRun(t, work, false, "reset", "--hard", "HEAD~1")
	commitFile(t, work, "c.txt", "c\n", "rewrite")
	gitRun(t, work, false, "push", "--force", "origin", "main")
	assert.Equal(t, revParse(t, work, "HEAD"), revParse(t, g.upstream, "main"))
	assert.Equal(t, revParse(t, work, "HEAD"), revParse(t, g.cfg.MirrorPath("proj"), "main"))
}

func TestForcePushLeaseProtectsUnseenUpstreamWork(t *testing.T) {
	g := newGate(t, true)
	work := g.clone("proj")
	// The upstream moves on without the gate seeing it (no fetch since).
	other := filepath.Join(g.root, "other")
	gitRun(t, g.root, false, "clone", g.upstream, other)
	commitFile(t, other, "o.txt", "o\n", "theirs")
	gitRun(t, other, false, "push", "origin", "main")
	theirs := revParse(t, other, "HEAD")

	commitFile(t, work, "m.txt", "m\n", "mine")
	gitRun(t, work, false, "commit", "--amend", "-m", "mine, amended")
	out, err := gitRun(t, work, true, "push", "--force", "origin", "main")
	require.Error(t, err, out)
	assert.Equal(t, theirs, revParse(t, g.upstream, "main"), "their commit survives")
}

func TestUndeclaredRepositoryRefused(t *testing.T) {
	g := newGate(t)
	// A bare repo under the base path that is not declared.
	gitRun(t, g.root, false, "init", "--bare", filepath.Join(g.cfg.BasePath, "secret.git"))
	for _, name := range []string{"secret", "nope", "proj.git/../secret", ".gate"} {
		out, err := gitRun(t, g.root, true, "ls-remote", g.url(name))
		assert.Error(t, err, name)
		assert.NotContains(t, out, "refs/heads", name)
	}
}

func TestUpstreamRejectionLeavesMirrorUnchanged(t *testing.T) {
	g := newGate(t)
	work := g.clone("proj")
	before := revParse(t, g.upstream, "main")
	hook := filepath.Join(g.upstream, "hooks", "pre-receive")
	require.NoError(t, os.WriteFile(hook, []byte("#!/bin/sh\necho 'upstream policy: commits must be signed' >&2\nexit 1\n"), 0o755))

	commitFile(t, work, "x.txt", "x\n", "unsigned")
	out, err := gitRun(t, work, true, "push", "origin", "main")
	require.Error(t, err)
	assert.Contains(t, out, "upstream policy: commits must be signed")
	assert.Contains(t, out, "the upstream refused the push")
	assert.Equal(t, before, revParse(t, g.upstream, "main"))
	assert.Equal(t, before, revParse(t, g.cfg.MirrorPath("proj"), "main"), "mirror unchanged")
}

func TestFetchRefreshesFromUpstream(t *testing.T) {
	g := newGate(t)
	work := g.clone("proj")
	// Someone else pushes straight to the upstream.
	other := filepath.Join(g.root, "other")
	gitRun(t, g.root, false, "clone", g.upstream, other)
	commitFile(t, other, "o.txt", "o\n", "from elsewhere")
	gitRun(t, other, false, "push", "origin", "main")
	gitRun(t, other, false, "push", "origin", "main:refs/heads/extra")

	gitRun(t, work, false, "fetch", "origin")
	assert.Equal(t, revParse(t, other, "HEAD"), revParse(t, work, "origin/main"))
	assert.Equal(t, revParse(t, other, "HEAD"), revParse(t, work, "origin/extra"))

	// Pruned upstream deletions disappear from the mirror on the next fetch.
	gitRun(t, other, false, "push", "origin", ":extra")
	gitRun(t, work, false, "fetch", "--prune", "origin")
	_, err := gitRun(t, work, true, "rev-parse", "--verify", "origin/extra")
	assert.Error(t, err)
}

func TestConcurrentFetchesCoalesce(t *testing.T) {
	g := newGate(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = gitRun(t, g.root, true, "ls-remote", g.url("proj"))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
}

func TestShutdownStopsDaemon(t *testing.T) {
	g := newGate(t)
	require.NoError(t, g.srv.Shutdown(context.Background()))
	select {
	case <-g.srv.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("daemon still running")
	}
	_, err := gitRun(t, g.root, true, "ls-remote", g.url("proj"))
	assert.Error(t, err)
	g.logMu.Lock()
	defer g.logMu.Unlock()
	assert.Contains(t, g.logs.String(), `"msg":"ready"`)
}
