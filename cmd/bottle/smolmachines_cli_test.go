package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines/smolmachinestest"
	"github.com/bot-bottle/bot-bottle/internal/launcher"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

// smolCLIManifest is a small bottle: the egress proxy and the supervise
// server as sidecars, a prompt and a git identity to provision.
const smolCLIManifest = `bottles:
  dev:
    supervise: true
    git_user:
      name: CLI Bot
      email: cli-bot@example.com
agents:
  demo:
    bottle: dev
    prompt: Say hello.
`

// smolCLI runs the bottle binary against one simulator and one state root.
type smolCLI struct {
	t        *testing.T
	bin      string
	manifest string
	stateDir string // XDG_STATE_HOME
	sim      *smolmachinestest.Sim
	env      []string
}

func newSmolCLI(t *testing.T) *smolCLI {
	t.Helper()
	testskip.Short(t, "integration test: launches bottles")
	eng := testenv.RequireDocker(t)
	// The CLI finds the images the test environment built by their
	// content hash (same bottle binary, same claude stub).
	testenv.Images(t)
	c := &smolCLI{
		t:        t,
		bin:      testenv.BottleBinary(t),
		manifest: filepath.Join(t.TempDir(), "bottle.yaml"),
		stateDir: t.TempDir(),
		sim:      smolmachinestest.New(t, eng.Client()),
	}
	require.NoError(t, os.WriteFile(c.manifest, []byte(smolCLIManifest), 0o644))
	c.env = append(os.Environ(),
		smolmachines.PathEnv+"="+c.sim.Bin,
		"XDG_STATE_HOME="+c.stateDir,
		// The agent image tar is exported once into a test cache shared
		// with internal/launcher's tests, not into the user's cache.
		"XDG_CACHE_HOME="+filepath.Join(os.TempDir(), "bot-bottle-launcher-smolvm-cache"),
		"BOT_BOTTLE_CLAUDE_STUB="+testenv.ClaudeStubBinary(t),
	)
	c.env = append(c.env, c.sim.Env...)
	t.Cleanup(func() {
		// Whatever a failed test left: every bottle of this state root.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, c.bin, "rm", "--all")
		cmd.Env = c.env
		_ = cmd.Run()
	})
	return c
}

// command returns the bottle command for args, with extra environment.
func (c *smolCLI) command(ctx context.Context, extraEnv []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(append([]string{}, c.env...), extraEnv...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs bottle with args and returns stdout, stderr and the exit code.
func (c *smolCLI) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return c.runEnv(nil, args...)
}

// runEnv is run with extra environment.
func (c *smolCLI) runEnv(extraEnv []string, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := c.command(ctx, extraEnv, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		c.t.Fatalf("bottle %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs bottle with args, requires exit 0 and returns stdout.
func (c *smolCLI) ok(args ...string) string {
	c.t.Helper()
	return c.okEnv(nil, args...)
}

// okEnv is ok with extra environment.
func (c *smolCLI) okEnv(extraEnv []string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.runEnv(extraEnv, args...)
	require.Equal(c.t, 0, code, "bottle %v: stdout %q stderr %q", args, out, errOut)
	return out
}

// ls returns the bottles by slug.
func (c *smolCLI) ls() map[string]launcher.Bottle {
	c.t.Helper()
	return c.lsEnv(nil)
}

// lsEnv is ls with extra environment.
func (c *smolCLI) lsEnv(extraEnv []string) map[string]launcher.Bottle {
	c.t.Helper()
	var all []launcher.Bottle
	require.NoError(c.t, json.Unmarshal([]byte(c.okEnv(extraEnv, "ls", "--json")), &all))
	out := map[string]launcher.Bottle{}
	for _, b := range all {
		out[b.Slug] = b
	}
	return out
}

// requireGone asserts that nothing of slug is left: no container, network
// or volume, no machine, no state dir.
func (c *smolCLI) requireGone(slug string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eng := testenv.RequireDocker(c.t)
	res, err := eng.List(ctx, backends.Labels{backends.LabelSlug: slug})
	require.NoError(c.t, err)
	assert.Empty(c.t, res, "resources of %s left behind", slug)
	// The simulator's container for the machine.
	sims, err := eng.Client().ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", "smolvmsim.machine="+smolmachines.MachineName(slug)),
	})
	require.NoError(c.t, err)
	assert.Empty(c.t, sims.Items, "the simulator's container of %s left behind", slug)
	cli := smolmachines.NewCLI(c.sim.Bin)
	cli.Env = c.sim.Env
	ms, err := cli.List(ctx)
	require.NoError(c.t, err)
	for _, m := range ms {
		assert.NotEqual(c.t, smolmachines.MachineName(slug), m.Name, "machine of %s left behind", slug)
	}
	_, err = os.Stat(filepath.Join(c.stateDir, "bot-bottle", slug))
	assert.True(c.t, os.IsNotExist(err), "state dir of %s left behind", slug)
}

// machineState reads the simulator's record of a machine ("" when there
// is none yet).
func (c *smolCLI) machineState(name string) string {
	b, err := os.ReadFile(filepath.Join(c.sim.StateDir, "machines", name+".json"))
	if err != nil {
		return ""
	}
	var rec struct {
		State string `json:"state"`
	}
	if json.Unmarshal(b, &rec) != nil {
		return ""
	}
	return rec.State
}

// TestSmolMachinesCLILifecycle drives a smolmachines bottle through the
// CLI binary: launch detached, ls, exec, stop, a launch killed mid-way that
// gc collects (and only it), and rm.
func TestSmolMachinesCLILifecycle(t *testing.T) {
	c := newSmolCLI(t)

	start := time.Now()
	slug := strings.TrimSpace(c.ok("launch", "demo", "-f", c.manifest, "--backend", "smolmachines", "--detach"))
	t.Logf("bottle launch --backend smolmachines --detach: %s", time.Since(start).Round(time.Millisecond))
	require.True(t, strings.HasPrefix(slug, "demo-"), "launch prints the slug, got %q", slug)
	machine := smolmachines.MachineName(slug)

	t.Run("ls", func(t *testing.T) {
		b, ok := c.ls()[slug]
		require.True(t, ok)
		assert.Equal(t, launcher.StateReady, b.State, b.Reason)
		assert.Equal(t, "smolmachines", b.Backend)
		assert.Equal(t, "demo", b.Agent)
		var kinds []string
		for _, r := range b.Resources {
			kinds = append(kinds, r.Kind+":"+r.Name)
		}
		assert.Contains(t, kinds, "machine:"+machine)
		for _, r := range b.Resources {
			if r.Kind == launcher.KindContainer {
				assert.NotEqual(t, "machine", r.Labels[backends.LabelRole], "the machine is no container: %s", r.Name)
			}
		}
	})
	t.Run("smolvm found on PATH", func(t *testing.T) {
		// Without $BOT_BOTTLE_SMOLVM, a smolvm on PATH shows the machine.
		path := "PATH=" + smolmachinestest.Simulator(t) + string(os.PathListSeparator) + os.Getenv("PATH")
		b := c.lsEnv([]string{smolmachines.PathEnv + "=", path})[slug]
		assert.Equal(t, launcher.StateReady, b.State, b.Reason)
		_, err := exec.LookPath("smolvm")
		testskip.Unless(t, err != nil, "a smolvm is on this host's PATH: cannot test without one")
		// Without any smolvm the machine cannot be seen: the bottle is
		// unknown, not broken, and gc leaves it alone.
		noSmolvm := []string{smolmachines.PathEnv + "="}
		b = c.lsEnv(noSmolvm)[slug]
		assert.Equal(t, launcher.StateUnknown, b.State)
		assert.Contains(t, b.Reason, "smolvm")
		_, errOut, code := c.runEnv(noSmolvm, "gc")
		assert.Equal(t, 0, code, errOut)
		assert.Contains(t, errOut, "nothing to collect")
		assert.Equal(t, launcher.StateReady, c.ls()[slug].State)
	})
	t.Run("another state root leaves it alone", func(t *testing.T) {
		// Seen from another state root the bottle has no ready marker;
		// were it listed there, gc would take it for a dead launch.
		other := []string{"XDG_STATE_HOME=" + t.TempDir()}
		assert.NotContains(t, c.lsEnv(other), slug)
		_, errOut, code := c.runEnv(other, "gc")
		assert.Equal(t, 0, code, errOut)
		assert.Contains(t, errOut, "nothing to collect")
		assert.Equal(t, launcher.StateReady, c.ls()[slug].State)
	})
	t.Run("exec", func(t *testing.T) {
		assert.Equal(t, "node\n", c.ok("exec", slug, "--", "id", "-un"))
		assert.Equal(t, "CLI Bot\n", c.ok("exec", slug, "--", "git", "config", "--global", "user.name"))
		_, _, code := c.run("exec", slug, "--", "sh", "-c", "exit 3")
		assert.Equal(t, 3, code, "the guest's exit status passes through")
	})
	t.Run("stop", func(t *testing.T) {
		start := time.Now()
		assert.Equal(t, slug+"\n", c.ok("stop", slug))
		t.Logf("bottle stop: %s", time.Since(start).Round(time.Millisecond))
		assert.Equal(t, "stopped", c.machineState(machine))
		b := c.ls()[slug]
		assert.Equal(t, launcher.StateStopped, b.State, b.Reason)
		for _, r := range b.Resources {
			assert.NotEqual(t, "running", r.State, "%s %s still runs", r.Kind, r.Name)
		}
		_, errOut, code := c.run("exec", slug, "--", "true")
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, "stopped")
	})

	t.Run("gc collects a launch that died", func(t *testing.T) {
		// A launch whose guest steps never get past the warm-up race is
		// killed once its machine runs: its sidecars, networks, machine
		// and state dir stay behind for gc.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := c.command(ctx, []string{"SMOLVM_SIM_RACE_P=1", "SMOLVM_SIM_RACE_MS=600000"},
			"launch", "demo", "-f", c.manifest, "--backend", "smolmachines", "--detach")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		var dead string
		deadline := time.Now().Add(2 * time.Minute)
		for dead == "" && time.Now().Before(deadline) {
			entries, _ := os.ReadDir(filepath.Join(c.sim.StateDir, "machines"))
			for _, e := range entries {
				name := strings.TrimSuffix(e.Name(), ".json")
				if name != machine && strings.HasSuffix(e.Name(), ".json") && c.machineState(name) == "running" {
					dead = strings.TrimPrefix(name, smolmachines.NamePrefix)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
		require.NotEmpty(t, dead, "the second launch never started its machine: %s", stderr.String())

		all := c.ls()
		assert.Equal(t, launcher.StateBroken, all[dead].State)
		assert.Equal(t, "smolmachines", all[dead].Backend)
		assert.Equal(t, launcher.StateStopped, all[slug].State)

		assert.Equal(t, dead+"\n", c.ok("gc"), "gc removes the dead launch and nothing else")
		c.requireGone(dead)
		all = c.ls()
		assert.NotContains(t, all, dead)
		assert.Contains(t, all, slug)
	})

	assert.Equal(t, slug+"\n", c.ok("rm", slug))
	c.requireGone(slug)
	assert.Empty(t, c.ls())
}
