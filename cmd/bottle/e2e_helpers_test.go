package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
)

// cliTimeout bounds one run of the binary; a launch takes seconds, a bench
// of a few cycles well under a minute on the shared machine.
const cliTimeout = 5 * time.Minute

// bottleCLI runs the real bottle binary the way a user does, with a state
// root, a skills dir and a working dir of the test's own.
type bottleCLI struct {
	t      *testing.T
	bin    string
	dir    string // working dir; manifests and outputs go here
	state  string // $XDG_STATE_HOME
	skills string // $BOT_BOTTLE_SKILLS_DIR, holding the skill "verify"
	env    []string
	eng    *docker.Engine // nil for tests without the engine
}

// cliResult is one run of the binary.
type cliResult struct {
	stdout, stderr string
	code           int
}

// newCLI prepares the binary without the engine: enough for plan, manifest
// and help, which never talk to Docker.
func newCLI(t *testing.T, extraEnv ...string) *bottleCLI {
	t.Helper()
	c := &bottleCLI{
		t:      t,
		bin:    testenv.BottleBinary(t),
		dir:    t.TempDir(),
		state:  t.TempDir(),
		skills: t.TempDir(),
	}
	require.NoError(t, os.MkdirAll(filepath.Join(c.skills, "verify"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(c.skills, "verify", "SKILL.md"), []byte("# verify\n"), 0o644))
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// The test decides every variable the binary reads.
		if k == "XDG_STATE_HOME" || k == "NO_COLOR" || strings.HasPrefix(k, "BOT_BOTTLE_") {
			continue
		}
		c.env = append(c.env, kv)
	}
	c.env = append(c.env, "XDG_STATE_HOME="+c.state, "BOT_BOTTLE_SKILLS_DIR="+c.skills)
	c.env = append(c.env, extraEnv...)
	return c
}

// newDockerCLI is newCLI for commands that launch: it needs the engine,
// points the binary at the claude stub, and builds the images first so
// that no build output mixes with what a test reads from stderr.
func newDockerCLI(t *testing.T, extraEnv ...string) *bottleCLI {
	t.Helper()
	eng := testenv.RequireDocker(t)
	// The binary builds the same images (same inputs, same tags); building
	// them here keeps the first launch's figures and stderr clean.
	testenv.Images(t)
	c := newCLI(t, append([]string{"BOT_BOTTLE_CLAUDE_STUB=" + testenv.ClaudeStubBinary(t)}, extraEnv...)...)
	c.eng = eng
	return c
}

// run runs the binary with args and returns what it printed and its exit
// code. It fails the test only when the binary could not run at all.
func (c *bottleCLI) run(args ...string) cliResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = c.env
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.code = ee.ExitCode()
	default:
		c.t.Fatalf("bottle %v: %v\nstderr:\n%s", args, err, res.stderr)
	}
	return res
}

// ok runs the binary and fails the test unless it exits 0.
func (c *bottleCLI) ok(args ...string) cliResult {
	c.t.Helper()
	res := c.run(args...)
	require.Equal(c.t, 0, res.code, "bottle %v\nstdout:\n%s\nstderr:\n%s", args, res.stdout, res.stderr)
	return res
}

// path returns a path in the working dir.
func (c *bottleCLI) path(name string) string { return filepath.Join(c.dir, name) }

// write writes a file in the working dir and returns its path.
func (c *bottleCLI) write(name, content string) string {
	c.t.Helper()
	p := c.path(name)
	require.NoError(c.t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// read reads a file the binary wrote.
func (c *bottleCLI) read(path string) []byte {
	c.t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(c.t, err)
	return b
}

// removeAgentAtEnd removes, when the test ends, every resource a launch of
// agent left, whatever happened: agent names are unique per test, so the
// selector matches this test's bottles alone.
func (c *bottleCLI) removeAgentAtEnd(agent string) {
	c.t.Helper()
	testenv.Cleanup(c.t, c.eng, backends.Labels{backends.LabelAgent: agent})
}

// requireNothingLeft asserts that no container, network or volume carries
// the selector labels.
func (c *bottleCLI) requireNothingLeft(selector backends.Labels) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.eng.List(ctx, selector)
	require.NoError(c.t, err)
	require.Empty(c.t, res, "resources matching %v left behind", selector)
}

// stateDirs lists the bottle state dirs under the private state root.
func (c *bottleCLI) stateDirs() []string {
	c.t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.state, "bot-bottle"))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(c.t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// uniqueAgent returns an agent name no other test uses, so that selecting
// by the agent label finds this test's bottles alone.
func uniqueAgent(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// planSteps returns the step IDs of `bottle plan AGENT -f M --format json`.
func (c *bottleCLI) planSteps(agent, manifestPath string) []string {
	c.t.Helper()
	res := c.ok("plan", agent, "-f", manifestPath, "--format", "json")
	var doc struct {
		Steps []struct {
			ID string `json:"id"`
		} `json:"steps"`
	}
	require.NoError(c.t, json.Unmarshal([]byte(res.stdout), &doc), res.stdout)
	var ids []string
	for _, s := range doc.Steps {
		ids = append(ids, s.ID)
	}
	require.NotEmpty(c.t, ids)
	return ids
}

// representativeManifest is a bottle with every feature a launch can have
// without an upstream: supervise, a git identity, a route that injects a
// token, an allowed host, agent environment and a skill. Host names are
// reserved test names that nothing resolves: the launch never dials them.
func representativeManifest(agent string) string {
	return `bottles:
  dev:
    git_user:
      name: Dev Bot
      email: dev@example.com
    supervise: true
    egress:
      routes:
        - host: api.test
          token_env: BOTTLE_TEST_TOKEN
    allow:
      - upstream.test
    env:
      EDITOR: vi
agents:
  ` + agent + `:
    bottle: dev
    prompt: Fix the failing test.
    skills: [verify]
`
}
