package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/images"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// removeImageAtEnd deletes a test-only image when the test ends.
func removeImageAtEnd(t *testing.T, b *images.Builder, ref string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		assert.NoError(t, b.Remove(ctx, ref, true))
	})
}

// variant copies a binary with extra trailing bytes: it still runs, but its
// hash, and so the image built from it, is the test's own.
func variant(t *testing.T, bin string) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), filepath.Base(bin))
	require.NoError(t, os.WriteFile(out, append(data, []byte("\x00"+testenv.Name("variant"))...), 0o755))
	return out
}

// runIn starts a sleeping container from image and returns it, removed at
// test end by label.
func runIn(t *testing.T, e *docker.Engine, image string) string {
	t.Helper()
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	id, err := e.CreateContainer(ctxT(t), backends.ContainerSpec{
		Name: testenv.Name("bbt-img"), Image: image, Labels: labels,
		Cmd: []string{"sleep", "infinity"}, Init: true,
	})
	require.NoError(t, err)
	require.NoError(t, e.StartContainer(ctxT(t), id))
	return id
}

func execOK(t *testing.T, e *docker.Engine, id string, req backends.ExecRequest) string {
	t.Helper()
	res, err := e.Exec(ctxT(t), id, req)
	require.NoError(t, err, "%v: %q %q", req.Argv, res.Stdout, res.Stderr)
	return res.Stdout
}

func TestStubAgentImage(t *testing.T) {
	b := testenv.Builder(t)
	e := b.Engine
	ctx := ctxT(t)

	ref, err := b.EnsureAgent(ctx, images.FlavourStub)
	require.NoError(t, err)
	planned, err := b.AgentRef(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, planned, ref, "the planned ref is the built ref; stub is the default")
	assert.True(t, strings.HasPrefix(ref, images.RepoAgent+":"))

	start := time.Now()
	again, err := b.EnsureAgent(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, ref, again)
	t.Logf("agent image found by tag in %s", time.Since(start).Round(time.Microsecond))
	assert.Less(t, time.Since(start), 2*time.Second, "a built image is found by tag")

	ins, err := e.Client().ImageInspect(ctx, ref)
	require.NoError(t, err)
	cfg := ins.Config
	assert.Equal(t, images.KindAgent, cfg.Labels[images.LabelImage])
	assert.Equal(t, images.FlavourStub, cfg.Labels[images.LabelFlavour])
	assert.Len(t, cfg.Labels[images.LabelHash], 64)
	assert.Equal(t, images.AgentWorkdir, cfg.WorkingDir)
	assert.Equal(t, []string{"/bin/bash"}, cfg.Cmd)
	assert.Empty(t, cfg.Entrypoint, "the build script is not the entrypoint")
	assert.Contains(t, cfg.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

	id := runIn(t, e, ref)
	assert.Equal(t, "uid=1000(node) gid=1000(node) groups=1000(node)\n", execOK(t, e, id, backends.ExecRequest{Argv: []string{"id", "node"}}))
	owners := execOK(t, e, id, backends.ExecRequest{Argv: []string{"stat", "-c", "%n %U:%G %a", "/home/node", "/home/node/workspace", "/home/node/.claude", images.ClaudePath, images.ClaudeStubLog}})
	assert.Equal(t, strings.Join([]string{
		"/home/node node:node 755",
		"/home/node/workspace node:node 755",
		"/home/node/.claude node:node 755",
		images.ClaudePath + " root:root 755",
		images.ClaudeStubLog + " root:root 666",
	}, "\n")+"\n", owners)
	assert.Equal(t, "/home/node/workspace\n", execOK(t, e, id, backends.ExecRequest{Argv: []string{"pwd"}}))

	// The stub, run as node the way provisioning runs it, registers the
	// MCP server in node's config and logs the call.
	asNode := []string{"runuser", "-u", "node", "--", "env", "HOME=/home/node", "USER=node"}
	execOK(t, e, id, backends.ExecRequest{Argv: append(asNode, "claude", "mcp", "add", "--scope", "user", "--transport", "http", "supervise", "http://10.213.9.3:8090/mcp"),
		Env: []string{"SECRET_PROBE=xyzzy"}})
	assert.Equal(t, "supervise: http://10.213.9.3:8090/mcp (HTTP)\n", execOK(t, e, id, backends.ExecRequest{Argv: append(asNode, "claude", "mcp", "list")}))
	assert.Equal(t, "node:node\n", execOK(t, e, id, backends.ExecRequest{Argv: []string{"stat", "-c", "%U:%G", "/home/node/.claude.json"}}))

	lines := strings.Split(strings.TrimSpace(execOK(t, e, id, backends.ExecRequest{Argv: []string{"cat", images.ClaudeStubLog}})), "\n")
	require.Len(t, lines, 2)
	var rec struct {
		Argv []string          `json:"argv"`
		Env  map[string]string `json:"env"`
		User string            `json:"user"`
		UID  int               `json:"uid"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	assert.Equal(t, "node", rec.User)
	assert.Equal(t, 1000, rec.UID)
	assert.Equal(t, "xyzzy", rec.Env["SECRET_PROBE"])
	assert.Equal(t, "/home/node", rec.Env["HOME"])
	assert.Equal(t, []string{"claude", "mcp", "add", "--scope", "user", "--transport", "http", "supervise", "http://10.213.9.3:8090/mcp"}, rec.Argv)

	// Any other invocation ends at once with status 0.
	assert.Contains(t, execOK(t, e, id, backends.ExecRequest{Argv: []string{"claude", "-p", "hello"}}), "claude-stub")
}

func TestAgentImageIsRebuiltWhenLostAndTracksTheStub(t *testing.T) {
	b := testenv.Builder(t)
	ctx := ctxT(t)
	shared, err := b.AgentRef(ctx, images.FlavourStub)
	require.NoError(t, err)

	images.SetNoLatest(b)
	b.ClaudeStub = variant(t, b.ClaudeStub)
	ref, err := b.AgentRef(ctx, images.FlavourStub)
	require.NoError(t, err)
	assert.NotEqual(t, shared, ref, "the stub's bytes are an input")
	removeImageAtEnd(t, b, ref)

	start := time.Now()
	built, err := b.EnsureAgent(ctx, images.FlavourStub)
	require.NoError(t, err)
	t.Logf("stub agent image built in %s", time.Since(start).Round(10*time.Millisecond))
	assert.Equal(t, ref, built)

	require.NoError(t, b.Remove(ctx, ref, true))
	ok, err := b.Engine.ImageExists(ctx, ref)
	require.NoError(t, err)
	require.False(t, ok)
	rebuilt, err := b.EnsureAgent(ctx, images.FlavourStub)
	require.NoError(t, err)
	assert.Equal(t, ref, rebuilt)
	ok, err = b.Engine.ImageExists(ctx, ref)
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestSidecarImage(t *testing.T) {
	b := testenv.Builder(t)
	e := b.Engine
	ctx := ctxT(t)
	images.SetNoLatest(b)
	// Any static binary stands in for bottle; the stub answers --version.
	bin := variant(t, testenv.ClaudeStubBinary(t))
	ref, err := b.SidecarRef(ctx, bin)
	require.NoError(t, err)
	removeImageAtEnd(t, b, ref)

	start := time.Now()
	built, err := b.EnsureSidecar(ctx, bin)
	require.NoError(t, err)
	t.Logf("sidecar image built in %s", time.Since(start).Round(10*time.Millisecond))
	assert.Equal(t, ref, built)
	assert.True(t, strings.HasPrefix(ref, images.RepoSidecar+":"))

	ins, err := e.Client().ImageInspect(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, images.KindSidecar, ins.Config.Labels[images.LabelImage])
	assert.Equal(t, []string{images.BottlePath}, ins.Config.Cmd)

	id := runIn(t, e, ref)
	assert.Equal(t, "root:root 755\n", execOK(t, e, id, backends.ExecRequest{Argv: []string{"stat", "-c", "%U:%G %a", images.BottlePath}}))
	assert.Contains(t, execOK(t, e, id, backends.ExecRequest{Argv: []string{"bottle", "--version"}, Env: []string{"CLAUDE_STUB_LOG=/tmp/log"}}), "stub")
	assert.Contains(t, execOK(t, e, id, backends.ExecRequest{Argv: []string{"git", "--version"}}), "git version", "the git gate needs git")

	refs, err := b.Refs(ctx, "", bin)
	require.NoError(t, err)
	agent, err := b.AgentRef(ctx, "")
	require.NoError(t, err)
	base, err := b.BaseRef(ctx)
	require.NoError(t, err)
	assert.Equal(t, images.Refs{Base: base, Agent: agent, Sidecar: ref}, refs)

	other := variant(t, bin)
	otherRef, err := b.SidecarRef(ctx, other)
	require.NoError(t, err)
	assert.NotEqual(t, ref, otherRef, "the binary's bytes are an input")

	notExec := filepath.Join(t.TempDir(), "bottle")
	require.NoError(t, os.WriteFile(notExec, []byte("x"), 0o644))
	_, err = b.EnsureSidecar(ctx, notExec)
	assert.ErrorContains(t, err, "not executable")
	_, err = b.EnsureSidecar(ctx, filepath.Join(t.TempDir(), "missing"))
	assert.Error(t, err)
}

func TestStatusListsBuiltImages(t *testing.T) {
	b := testenv.Builder(t)
	ctx := ctxT(t)
	agent, err := b.EnsureAgent(ctx, "")
	require.NoError(t, err)
	base, err := b.BaseRef(ctx)
	require.NoError(t, err)

	list, err := b.Status(ctx)
	require.NoError(t, err)
	kinds := map[string]string{}
	for _, img := range list {
		for _, tag := range img.Tags {
			kinds[tag] = img.Kind
		}
		assert.NotEmpty(t, img.ID)
		assert.NotEmpty(t, img.Hash)
		assert.Positive(t, img.Size)
	}
	assert.Equal(t, images.KindAgent, kinds[agent])
	assert.Equal(t, images.KindBase, kinds[base])
	assert.Equal(t, images.KindBase, kinds[images.RepoBase+":latest"])
}

func TestBaseOverride(t *testing.T) {
	b := testenv.Builder(t)
	ctx := ctxT(t)
	realBase, err := b.EnsureBase(ctx)
	require.NoError(t, err)
	defaultAgent, err := b.AgentRef(ctx, "")
	require.NoError(t, err)

	missing := *b
	missing.BaseImage = "bot-bottle-no-such-base:" + strings.TrimPrefix(testenv.Name("x"), "x-")
	_, err = missing.EnsureBase(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), images.EnvBaseImage)
	assert.Contains(t, err.Error(), "no such local image")
	_, err = missing.AgentRef(ctx, "")
	assert.Error(t, err)

	t.Setenv(images.EnvBaseImage, realBase)
	env := *b
	got, err := env.EnsureBase(ctx)
	require.NoError(t, err)
	assert.Equal(t, realBase, got, "the override is used as is")
	overridden, err := env.AgentRef(ctx, "")
	require.NoError(t, err)
	assert.NotEqual(t, defaultAgent, overridden, "agent images on another base are other images")
}

func TestAgentFlavourErrors(t *testing.T) {
	b := testenv.Builder(t)
	ctx := ctxT(t)
	_, err := b.EnsureAgent(ctx, "fancy")
	assert.ErrorContains(t, err, `unknown agent flavour "fancy"`)
	noStub := *b
	noStub.ClaudeStub = ""
	_, err = noStub.EnsureAgent(ctx, images.FlavourStub)
	assert.ErrorContains(t, err, "claude stub")
	npm, err := b.AgentRef(ctx, images.FlavourNPM)
	require.NoError(t, err)
	stub, err := b.AgentRef(ctx, images.FlavourStub)
	require.NoError(t, err)
	assert.NotEqual(t, npm, stub)
}

// The base build path, on a tiny rootfs under a test-only repository: a
// cached tarball is imported without debootstrap, exactly once however
// many builders race for it.
func TestEnsureBaseImportsCachedTarballOnce(t *testing.T) {
	e := testenv.RequireDocker(t)
	ctx := ctxT(t)
	stub := testenv.ClaudeStubBinary(t)

	rootfs := t.TempDir()
	for _, d := range []string{"usr/local/bin", "var/log", "tmp"} {
		require.NoError(t, os.MkdirAll(filepath.Join(rootfs, d), 0o755))
	}
	data, err := os.ReadFile(stub)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(rootfs, "usr/local/bin/claude"), data, 0o755))
	require.NoError(t, os.Symlink("usr/local/bin", filepath.Join(rootfs, "bin")))

	cache := t.TempDir()
	tarball := filepath.Join(cache, "base-"+images.BaseHash()[:12]+".tar")
	f, err := os.Create(tarball)
	require.NoError(t, err)
	require.NoError(t, images.WriteRootfsTar(f, rootfs))
	require.NoError(t, f.Close())

	repo := "bot-bottle-test-base-" + strings.TrimPrefix(testenv.Name("r"), "r-")
	const n = 4
	logs := make([]bytes.Buffer, n)
	refs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		b := &images.Builder{Engine: e, Log: &logs[i], CacheDir: cache}
		images.SetBaseRepo(b, repo)
		if i == 0 {
			removeImageAtEnd(t, b, repo+":latest")
			removeImageAtEnd(t, b, repo+":"+images.BaseHash()[:12])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			refs[i], errs[i] = b.EnsureBase(ctx)
		}()
	}
	wg.Wait()
	imports := 0
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, repo+":"+images.BaseHash()[:12], refs[i])
		imports += strings.Count(logs[i].String(), "importing base image")
		assert.NotContains(t, logs[i].String(), "debootstrap")
	}
	assert.Equal(t, 1, imports, "one import for all builders")

	ins, err := e.Client().ImageInspect(ctx, refs[0])
	require.NoError(t, err)
	assert.Equal(t, images.KindBase, ins.Config.Labels[images.LabelImage])
	assert.Equal(t, images.BaseHash(), ins.Config.Labels[images.LabelHash])
	latest, err := e.Client().ImageInspect(ctx, repo+":latest")
	require.NoError(t, err)
	assert.Equal(t, ins.ID, latest.ID)

	// The imported tree runs: the stub through the bin symlink.
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	id, err := e.CreateContainer(ctx, backends.ContainerSpec{Name: testenv.Name("bbt-tiny"), Image: refs[0], Labels: labels, Cmd: []string{"/bin/claude", "--version"}})
	require.NoError(t, err)
	require.NoError(t, e.StartContainer(ctx, id))
	code, err := e.Wait(ctx, id)
	require.NoError(t, err)
	logsOut, err := e.Logs(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, 0, code, logsOut)
	assert.Contains(t, logsOut, "Claude Code stub")
}

// A lost engine image is re-imported from the cached tarball, without
// debootstrap. Uses the real tarball under a test-only repository; the
// layer is shared with the real base, so it costs no disk.
func TestReimportRealCachedBase(t *testing.T) {
	testskip.Short(t, "imports a few hundred megabytes")
	b := testenv.Builder(t)
	ctx := ctxT(t)
	_, err := b.EnsureBase(ctx)
	require.NoError(t, err)
	cacheBase, err := os.UserCacheDir()
	require.NoError(t, err)
	name := "base-" + images.BaseHash()[:12] + ".tar"
	real := filepath.Join(cacheBase, "bot-bottle", name)
	_, err = os.Stat(real)
	testskip.Unless(t, err == nil, "no cached base tarball at %s (base came from elsewhere)", real)
	cache := t.TempDir()
	require.NoError(t, os.Symlink(real, filepath.Join(cache, name)))

	var log bytes.Buffer
	tb := &images.Builder{Engine: b.Engine, Log: &log, CacheDir: cache}
	repo := "bot-bottle-test-base-" + strings.TrimPrefix(testenv.Name("r"), "r-")
	images.SetBaseRepo(tb, repo)
	ref := repo + ":" + images.BaseHash()[:12]
	removeImageAtEnd(t, tb, repo+":latest")
	removeImageAtEnd(t, tb, ref)

	start := time.Now()
	got, err := tb.EnsureBase(ctx)
	require.NoError(t, err)
	t.Logf("base re-imported from the cached tarball in %s", time.Since(start).Round(10*time.Millisecond))
	assert.Equal(t, ref, got)
	assert.Contains(t, log.String(), "importing base image")
	assert.NotContains(t, log.String(), "debootstrap")

	id := runIn(t, b.Engine, ref)
	out := execOK(t, b.Engine, id, backends.ExecRequest{Argv: []string{"sh", "-c", "git --version && curl --version | head -1 && dig -v 2>&1 && nc -h 2>&1 | head -1 && runuser --version | head -1 && ls /usr/share/doc/git && test ! -e /usr/share/man/man1"}})
	for _, want := range []string{"git version", "curl ", "DiG ", "OpenBSD netcat", "runuser from util-linux", "copyright"} {
		assert.Contains(t, out, want)
	}
}
