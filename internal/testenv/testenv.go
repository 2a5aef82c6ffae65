// Package testenv holds helpers shared by tests that need the real Docker
// Engine, the project's binaries or its images. Each expensive thing (an
// engine client, a binary build, the images) is made once per test process;
// images are also shared across processes through their content-hash tags
// and the image builder's lock files.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/images"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

// LabelTest marks every resource a test creates; its value is unique per
// test (see Labels).
const LabelTest = "bot-bottle.test"

// imagesTimeout bounds building the images: the first base build runs
// debootstrap, which takes minutes; later runs find everything by tag.
const imagesTimeout = 30 * time.Minute

// cleanupTimeout bounds the removal of a test's resources.
const cleanupTimeout = 2 * time.Minute

// InCI reports whether tests run under CI, where missing prerequisites fail
// instead of skipping.
func InCI() bool { return testskip.InCI() }

var engine struct {
	once sync.Once
	e    *docker.Engine
	err  error
}

// RequireDocker returns an engine client. When the engine is unreachable the
// test fails under CI and is skipped, loudly, elsewhere.
func RequireDocker(t testing.TB) *docker.Engine {
	t.Helper()
	engine.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		engine.e, engine.err = docker.New(ctx)
	})
	testskip.Unless(t, engine.err == nil, "needs the Docker Engine: %v", engine.err)
	return engine.e
}

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func moduleRoot() (string, error) {
	// This file sits at <root>/internal/testenv/.
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			return root, nil
		}
	}
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module (go env GOMOD=%q)", mod)
	}
	return filepath.Dir(mod), nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

type built struct {
	once sync.Once
	path string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*built{}
)

// GoBinary builds a main package of the module (e.g. "./cmd/bottle") once
// per test process as a static, path-trimmed binary and returns its path.
// Builds go to a fixed per-package path under the temp dir, written under a
// temporary name and renamed, so parallel test processes never see a partial
// file and nothing piles up between runs.
func GoBinary(t testing.TB, pkg string) string {
	t.Helper()
	return GoBinaryTags(t, pkg)
}

// GoBinaryTags is GoBinary with build tags (e.g. "faultinject" for the
// bottle binary that injects test faults). Each set of tags gets its own
// binary, named after the package and the tags.
func GoBinaryTags(t testing.TB, pkg string, tags ...string) string {
	t.Helper()
	key := pkg
	if len(tags) > 0 {
		key += " " + strings.Join(tags, ",")
	}
	buildsMu.Lock()
	b, ok := builds[key]
	if !ok {
		b = &built{}
		builds[key] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(pkg, tags) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func goBuild(pkg string, tags []string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "bot-bottle-testbin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	args := []string{"build", "-trimpath"}
	if len(tags) > 0 {
		out += "-" + strings.Join(tags, "-")
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	var sfx [4]byte
	_, _ = rand.Read(sfx[:])
	tmp := out + ".tmp-" + hex.EncodeToString(sfx[:])
	cmd := exec.Command(goTool(), append(args, "-o", tmp, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	if err := os.Rename(tmp, out); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return out, nil
}

// BottleBinary builds ./cmd/bottle once per process and returns its path.
func BottleBinary(t testing.TB) string { t.Helper(); return GoBinary(t, "./cmd/bottle") }

// ClaudeStubBinary builds ./internal/claudestub once per process and
// returns its path.
func ClaudeStubBinary(t testing.TB) string {
	t.Helper()
	return GoBinary(t, "./internal/claudestub")
}

// Builder returns an image builder on the test engine whose progress goes
// to stderr, with the claude stub set.
func Builder(t testing.TB) *images.Builder {
	t.Helper()
	e := RequireDocker(t)
	return &images.Builder{Engine: e, Log: prefixWriter{os.Stderr, "images: "}, ClaudeStub: ClaudeStubBinary(t)}
}

var imgs struct {
	once        sync.Once
	base, agent string
	sidecar     string
	err         error
}

// BaseImage makes sure the base image exists (once per process) and returns
// its reference.
func BaseImage(t testing.TB) string {
	t.Helper()
	b := Builder(t)
	ensureImages(t, b)
	if imgs.err != nil {
		t.Fatalf("images: %v", imgs.err)
	}
	return imgs.base
}

// Images makes sure the base, the stub agent and the sidecar images exist
// (once per process) and returns the agent and sidecar references.
func Images(t testing.TB) (agentRef, sidecarRef string) {
	t.Helper()
	b := Builder(t)
	bottle := BottleBinary(t)
	ensureImages(t, b)
	if imgs.err != nil {
		t.Fatalf("images: %v", imgs.err)
	}
	sidecarOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), imagesTimeout)
		defer cancel()
		imgs.sidecar, sidecarErr = b.EnsureSidecar(ctx, bottle)
	})
	if sidecarErr != nil {
		t.Fatalf("sidecar image: %v", sidecarErr)
	}
	return imgs.agent, imgs.sidecar
}

var (
	sidecarOnce sync.Once
	sidecarErr  error
)

func ensureImages(t testing.TB, b *images.Builder) {
	imgs.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), imagesTimeout)
		defer cancel()
		start := time.Now()
		imgs.base, imgs.err = b.EnsureBase(ctx)
		if imgs.err == nil {
			imgs.agent, imgs.err = b.EnsureAgent(ctx, images.FlavourStub)
		}
		fmt.Fprintf(os.Stderr, "testenv: images ready in %s\n", time.Since(start).Round(10*time.Millisecond))
	})
}

// Labels returns labels unique to this test run, for resources it creates:
// List and Cleanup by these find exactly the test's own resources.
func Labels(t testing.TB) backends.Labels {
	var sfx [4]byte
	_, _ = rand.Read(sfx[:])
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return backends.Labels{LabelTest: name + "-" + hex.EncodeToString(sfx[:])}
}

// Cleanup removes, at the end of the test, every container, network and
// volume carrying all the selector labels. Failures are reported as test
// errors.
func Cleanup(t testing.TB, e *docker.Engine, selector backends.Labels) {
	t.Helper()
	if len(selector) == 0 {
		t.Fatal("testenv.Cleanup: empty selector would remove everything")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := e.RemoveAll(ctx, selector); err != nil {
			t.Errorf("cleanup %v: %v", selector, err)
		}
	})
}

// Name returns a resource name unique to this test run, starting with
// prefix.
func Name(prefix string) string {
	var sfx [5]byte
	_, _ = rand.Read(sfx[:])
	return prefix + "-" + hex.EncodeToString(sfx[:])
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	_, err := io.WriteString(p.w, p.prefix+string(b))
	return len(b), err
}
