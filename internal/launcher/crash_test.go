package launcher

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/faults"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// faultCLITimeout bounds one run of the binary.
const faultCLITimeout = 4 * time.Minute

// faultCLI runs a faultinject build of the bottle binary as a user would:
// its own state root, skills, token and working dir (a git repository, so
// --copy-cwd has a .git to copy), and an agent name no other test uses, so
// that its resources are told apart by label.
type faultCLI struct {
	t        *testing.T
	bin      string
	dir      string
	state    string // $XDG_STATE_HOME
	manifest string
	agent    string
	env      []string
	eng      *docker.Engine
}

// cliSteps are the steps of the CLI launches' graph: every step that needs
// no upstream (the git gate does; faults_test.go covers it in-process).
var cliSteps = []string{
	steps.IDImage, steps.IDNetwork, steps.IDSidecarEgress, steps.IDSidecarSupervise, steps.IDBoot,
	steps.IDCA, steps.IDPrompt, steps.IDSkills, steps.IDWorkspace, steps.IDGitUser, steps.IDSupervise,
}

func newFaultCLI(t *testing.T) *faultCLI {
	t.Helper()
	testskip.Short(t, "integration test: launches bottles")
	eng := testenv.RequireDocker(t)
	bin := testenv.GoBinaryTags(t, "./cmd/bottle", "faultinject")
	// The binary builds what is missing: its own sidecar image (it carries
	// this binary) included. Building here keeps the build out of the
	// launches' timings and spares concurrent launches the build lock.
	testenv.Images(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, err := testenv.Builder(t).EnsureSidecar(ctx, bin)
	require.NoError(t, err)

	var sfx [3]byte
	_, _ = rand.Read(sfx[:])
	c := &faultCLI{t: t, bin: bin, dir: gitInit(t), state: t.TempDir(), agent: "chaos" + hex.EncodeToString(sfx[:]), eng: eng}
	skills := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(skills, "verify"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(skills, "verify", "SKILL.md"), []byte("# verify\n"), 0o644))
	c.manifest = filepath.Join(t.TempDir(), "bottle.yaml")
	require.NoError(t, os.WriteFile(c.manifest, []byte(`bottles:
  dev:
    git_user:
      name: Chaos Bot
      email: chaos@example.com
    supervise: true
    egress:
      routes:
        - host: api.test
          token_env: CHAOS_TEST_TOKEN
    allow:
      - upstream.test
agents:
  `+c.agent+`:
    bottle: dev
    prompt: Fix it.
    skills: [verify]
`), 0o644))
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "XDG_STATE_HOME" || strings.HasPrefix(k, "BOT_BOTTLE_") {
			continue
		}
		c.env = append(c.env, kv)
	}
	c.env = append(c.env,
		"XDG_STATE_HOME="+c.state,
		"BOT_BOTTLE_SKILLS_DIR="+skills,
		"BOT_BOTTLE_CLAUDE_STUB="+testenv.ClaudeStubBinary(t),
		"CHAOS_TEST_TOKEN=tok-chaos-81d2",
	)
	// Whatever a test leaves, by its unique agent label.
	testenv.Cleanup(t, eng, backends.Labels{backends.LabelAgent: c.agent})
	return c
}

// cliRun is one finished run of the binary.
type cliRun struct {
	stdout, stderr string
	code           int
	killed         bool // ended by SIGKILL
}

// slug returns the slug the launch announced, if it got that far.
func (r cliRun) slug() string {
	m := regexp.MustCompile(`launching (\S+) \(`).FindStringSubmatch(r.stderr)
	if m == nil {
		return ""
	}
	return m[1]
}

// start starts the binary with args and extra environment.
func (c *faultCLI) start(ctx context.Context, env []string, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	c.t.Helper()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(append([]string{}, c.env...), env...)
	cmd.WaitDelay = 10 * time.Second
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	require.NoError(c.t, cmd.Start())
	return cmd, stdout, stderr
}

// wait waits for a started binary.
func (c *faultCLI) wait(ctx context.Context, cmd *exec.Cmd, stdout, stderr *syncBuffer) cliRun {
	err := cmd.Wait()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.killed = true
		}
	default:
		c.t.Errorf("bottle %v: %v (ran past its bound?)\nstderr:\n%s", cmd.Args[1:], err, r.stderr)
		r.code = -1
	}
	return r
}

// run runs the binary to its end.
func (c *faultCLI) run(env []string, args ...string) cliRun {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultCLITimeout)
	defer cancel()
	cmd, out, errb := c.start(ctx, env, args...)
	return c.wait(ctx, cmd, out, errb)
}

// mine returns the slugs of the test's agent among those a command
// printed: the engine is shared, and a bottle without a state root label
// (another test's fake, an older version's) is anyone's to collect.
func (c *faultCLI) mine(out string) []string {
	var slugs []string
	for _, s := range strings.Fields(out) {
		if strings.HasPrefix(s, c.agent+"-") {
			slugs = append(slugs, s)
		}
	}
	return slugs
}

// launchArgs launches the test's agent, detached, copying the cwd's .git.
func (c *faultCLI) launchArgs() []string {
	return []string{"launch", c.agent, "-f", c.manifest, "--copy-cwd", "--detach", "--progress", "none"}
}

// ls returns `bottle ls --json`.
func (c *faultCLI) ls() []Bottle {
	c.t.Helper()
	r := c.run(nil, "ls", "--json")
	require.Equal(c.t, 0, r.code, "bottle ls: %s", r.stderr)
	var out []Bottle
	require.NoError(c.t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	return out
}

// states maps each listed slug to its state.
func (c *faultCLI) states() map[string]string {
	out := map[string]string{}
	for _, b := range c.ls() {
		out[b.Slug] = b.State
	}
	return out
}

// resources returns what carries the slug's label.
func (c *faultCLI) resources(slug string) []backends.Resource {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.eng.List(ctx, backends.Labels{backends.LabelSlug: slug})
	require.NoError(c.t, err)
	return res
}

// stateDirs lists the bottle state dirs of the test's state root.
func (c *faultCLI) stateDirs() []string {
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

// requireAllGone asserts that nothing of the test's agent is left: no
// resource, no state dir, nothing listed.
func (c *faultCLI) requireAllGone() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.eng.List(ctx, backends.Labels{backends.LabelAgent: c.agent})
	require.NoError(c.t, err)
	assert.Empty(c.t, res, "resources of agent %s left behind", c.agent)
	assert.Empty(c.t, c.stateDirs(), "state dirs left behind")
	var listed []string
	for _, b := range c.ls() {
		listed = append(listed, b.Slug)
	}
	assert.Empty(c.t, c.mine(strings.Join(listed, " ")), "bottles still listed")
}

// testSeed returns the seed of a randomized test: $BOT_BOTTLE_TEST_SEED
// to replay one, else a fresh one. It is logged at the start and again
// when the test fails.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BOT_BOTTLE_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "BOT_BOTTLE_TEST_SEED")
		seed = v
	}
	t.Logf("seed %d (replay with BOT_BOTTLE_TEST_SEED=%d)", seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: replay with BOT_BOTTLE_TEST_SEED=%d", seed, seed)
		}
	})
	return seed
}

// chaosRun is one randomized launch: an optional fault, an optional
// SIGINT after a delay.
type chaosRun struct {
	n      int
	fault  *faults.Fault
	sigint time.Duration // < 0: none
	// sig is SIGINT (Ctrl-C) or SIGTERM; again, when > 0, sends it a
	// second time that long after the first (an impatient user).
	sig   syscall.Signal
	again time.Duration
}

func (r chaosRun) String() string {
	s := fmt.Sprintf("run %d:", r.n)
	if r.fault != nil {
		s += " fault " + r.fault.String()
	}
	if r.sigint >= 0 {
		s += fmt.Sprintf(" %s after %s", unix(r.sig), r.sigint)
		if r.again > 0 {
			s += fmt.Sprintf(" and again %s later", r.again)
		}
	}
	if r.fault == nil && r.sigint < 0 {
		s += " clean"
	}
	return s
}

// unix names a signal as kill(1) does.
func unix(sig syscall.Signal) string {
	if sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT"
}

// failureWords is what the error of a failed or interrupted launch says.
var failureWords = regexp.MustCompile(`step "[^"]+" failed|launch cancelled|context canceled`)

func TestLaunchRandomFaultsAndInterruptsEndHealthyOrRolledBack(t *testing.T) {
	c := newFaultCLI(t)
	rng := mrand.New(mrand.NewPCG(testSeed(t), 0x5eed))
	const launches, atOnce = 30, 3
	kinds := []faults.Kind{faults.KindError, faults.KindPanic, faults.KindHang}
	runs := make([]chaosRun, launches)
	for i := range runs {
		r := chaosRun{n: i, sigint: -1}
		if rng.IntN(3) > 0 {
			f := faults.Fault{Step: cliSteps[rng.IntN(len(cliSteps))], Kind: kinds[rng.IntN(len(kinds))]}
			if f.Kind == faults.KindHang {
				f.Duration = time.Second
			}
			r.fault = &f
		}
		if rng.IntN(2) == 0 {
			r.sigint = time.Duration(rng.Int64N(int64(6 * time.Second)))
			r.sig = syscall.SIGINT
			if rng.IntN(4) == 0 {
				r.sig = syscall.SIGTERM
			}
			if rng.IntN(3) == 0 {
				r.again = time.Duration(50+rng.IntN(500)) * time.Millisecond
			}
		}
		runs[i] = r
	}

	var healthy, rolledBack, cancelled, faulted int
	var mu sync.Mutex
	start := time.Now()
	sem := make(chan struct{}, atOnce)
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			outcome := c.chaosLaunch(r)
			mu.Lock()
			defer mu.Unlock()
			switch outcome {
			case "healthy":
				healthy++
			case "cancelled":
				cancelled++
				rolledBack++
			case "faulted":
				faulted++
				rolledBack++
			}
		}()
	}
	wg.Wait()
	t.Logf("%d launches (%d at a time) in %s: %d healthy and removed, %d rolled back (%d by a fault, %d by a signal)",
		launches, atOnce, time.Since(start).Round(time.Millisecond), healthy, rolledBack, faulted, cancelled)
	assert.Equal(t, launches, healthy+rolledBack)
	c.requireAllGone()
}

// chaosLaunch runs one randomized launch and checks how it ended:
// healthy (then removed) or fully rolled back.
func (c *faultCLI) chaosLaunch(r chaosRun) (outcome string) {
	t := c.t
	var env []string
	if r.fault != nil {
		env = append(env, faults.EnvVar+"="+r.fault.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultCLITimeout)
	defer cancel()
	cmd, stdout, stderr := c.start(ctx, env, c.launchArgs()...)
	if r.sigint >= 0 {
		timer := time.AfterFunc(r.sigint, func() { _ = cmd.Process.Signal(r.sig) })
		defer timer.Stop()
		if r.again > 0 {
			again := time.AfterFunc(r.sigint+r.again, func() { _ = cmd.Process.Signal(r.sig) })
			defer again.Stop()
		}
	}
	res := c.wait(ctx, cmd, stdout, stderr)
	slug := res.slug()
	if res.code == 0 {
		// A clean launch, or one whose SIGINT came too late to matter. A
		// fault always strikes: its step is in every launch's graph.
		assert.Nil(t, r.fault, "%s: launched %s despite the fault\n%s", r, slug, res.stderr)
		require.NotEmpty(t, slug, "%s: no slug announced\n%s", r, res.stderr)
		assert.Equal(t, slug, strings.TrimSpace(res.stdout), "%s: the detached launch prints its slug", r)
		assert.Equal(t, StateReady, c.states()[slug], "%s: %s", r, slug)
		rm := c.run(nil, "rm", slug)
		assert.Equal(t, 0, rm.code, "%s: bottle rm %s: %s", r, slug, rm.stderr)
		assert.Empty(t, c.resources(slug), "%s: %s left after rm", r, slug)
		return "healthy"
	}
	if res.code == -1 && slug == "" && r.sigint >= 0 && !res.killed {
		// The signal landed before bottle installed its handler (while the
		// runtime initialised, which a loaded machine can stretch), so the
		// default action ended it before it planned: nothing was created,
		// which requireAllGone checks for the whole run.
		return "cancelled"
	}
	assert.NotEqual(t, -1, res.code, "%s: ended by a signal after it planned %s\n%s", r, slug, res.stderr)
	assert.False(t, res.killed, "%s", r)
	if slug != "" {
		assert.Regexp(t, failureWords, res.stderr, "%s: the error names the step or says cancelled", r)
	} else {
		// Interrupted before it planned (loading the manifest, reaching
		// the engine): nothing to name, nothing created.
		assert.GreaterOrEqual(t, r.sigint, time.Duration(0), "%s: failed before planning:\n%s", r, res.stderr)
	}
	if r.fault != nil && !strings.Contains(res.stderr, "cancel") {
		assert.Contains(t, res.stderr, fmt.Sprintf("step %q failed", r.fault.Step), "%s", r)
		assert.Contains(t, res.stderr, "injected "+string(r.fault.Kind), "%s", r)
	}
	if r.fault == nil {
		assert.GreaterOrEqual(t, r.sigint, time.Duration(0), "%s: a clean launch failed:\n%s", r, res.stderr)
	}
	assert.NotContains(t, res.stderr, "cleanup:", "%s: the rollback sweep failed", r)
	assert.NotContains(t, res.stderr, "rollback:", "%s: an undo failed", r)
	if slug != "" {
		assert.Empty(t, c.resources(slug), "%s: resources of %s left behind\n%s", r, slug, res.stderr)
		_, err := os.Stat(filepath.Join(c.state, "bot-bottle", slug))
		assert.True(t, os.IsNotExist(err), "%s: state dir of %s left behind", r, slug)
		_, listed := c.states()[slug]
		assert.False(t, listed, "%s: %s still listed", r, slug)
	}
	if strings.Contains(res.stderr, "cancel") {
		return "cancelled"
	}
	return "faulted"
}

func TestKilledLaunchesAreBrokenAndGCRemovesThem(t *testing.T) {
	c := newFaultCLI(t)
	rng := mrand.New(mrand.NewPCG(testSeed(t), 0xdead))
	const crashes, atOnce = 10, 2
	start := time.Now()
	type crash struct {
		after time.Duration
		fault *faults.Fault
		res   cliRun
	}
	results := make([]crash, crashes)
	sem := make(chan struct{}, atOnce)
	var wg sync.WaitGroup
	for i := range results {
		// Most launches take a few seconds here: kill within them, a
		// few right at the start, some perhaps after the end.
		results[i].after = time.Duration(rng.Int64N(int64(5 * time.Second)))
		// Half of them also hang a step, so some kills land in the
		// rollback.
		var env []string
		if rng.IntN(2) == 0 {
			f := faults.Fault{Step: cliSteps[rng.IntN(len(cliSteps))], Kind: faults.KindHang, Duration: time.Second}
			results[i].fault = &f
			env = []string{faults.EnvVar + "=" + f.String()}
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), faultCLITimeout)
			defer cancel()
			cmd, stdout, stderr := c.start(ctx, env, c.launchArgs()...)
			timer := time.AfterFunc(results[i].after, func() { _ = cmd.Process.Kill() })
			defer timer.Stop()
			results[i].res = c.wait(ctx, cmd, stdout, stderr)
		}()
	}
	wg.Wait()

	listed := c.states()
	var killed, finished, leftNothing []string
	for i, cr := range results {
		slug := cr.res.slug()
		switch {
		case cr.res.killed && slug == "":
			// Killed before it planned: nothing can exist.
			leftNothing = append(leftNothing, fmt.Sprintf("#%d", i))
		case cr.res.killed:
			killed = append(killed, slug)
			if st, ok := listed[slug]; ok {
				assert.Equal(t, StateBroken, st, "crash %d (kill after %s): %s", i, cr.after, slug)
			} else {
				assert.Empty(t, c.resources(slug), "crash %d: %s has resources but is not listed", i, slug)
				leftNothing = append(leftNothing, slug)
			}
		case cr.fault != nil:
			// It failed and rolled back before the kill.
			assert.NotEqual(t, 0, cr.res.code, "crash %d: launched despite %s", i, cr.fault)
			assert.Contains(t, cr.res.stderr, fmt.Sprintf("step %q failed", cr.fault.Step))
			assert.Empty(t, c.resources(slug), "crash %d: %s rolled back but left resources", i, slug)
			leftNothing = append(leftNothing, slug)
		default:
			require.Equal(t, 0, cr.res.code, "crash %d: the launch finished before the kill, so it must have succeeded:\n%s", i, cr.res.stderr)
			finished = append(finished, slug)
			assert.Equal(t, StateReady, listed[slug], "crash %d: %s", i, slug)
		}
	}
	t.Logf("%d launches killed at random (%d at a time): %d killed mid-launch (%d before planning), %d ended before the kill (%d ready, %d rolled back by their fault), %d left nothing",
		crashes, atOnce, len(killed)+countNoSlug(leftNothing), countNoSlug(leftNothing), crashes-len(killed)-countNoSlug(leftNothing), len(finished), crashes-len(killed)-countNoSlug(leftNothing)-len(finished), len(leftNothing))
	for _, slug := range finished {
		require.Equal(t, 0, c.run(nil, "rm", slug).code)
	}

	gcStart := time.Now()
	gc := c.run(nil, "gc")
	require.Equal(t, 0, gc.code, "gc: %s", gc.stderr)
	var wantRemoved []string
	for _, slug := range killed {
		if listed[slug] == StateBroken {
			wantRemoved = append(wantRemoved, slug)
		}
	}
	assert.ElementsMatch(t, wantRemoved, c.mine(gc.stdout), "gc prints what it removed")
	t.Logf("gc removed %d broken bottles in %s; all runs %s", len(wantRemoved), time.Since(gcStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	c.requireAllGone()

	again := c.run(nil, "gc")
	assert.Equal(t, 0, again.code, "a second gc: %s", again.stderr)
	assert.Empty(t, c.mine(again.stdout), "a second gc removes nothing")
}

func countNoSlug(xs []string) int {
	n := 0
	for _, x := range xs {
		if strings.HasPrefix(x, "#") {
			n++
		}
	}
	return n
}

func TestGCSparesALaunchInProgress(t *testing.T) {
	c := newFaultCLI(t)

	// A crashed launch: killed once its agent exists, so gc has something
	// to remove beside the live launch.
	crashed := c.launchUntilAgent(nil)
	require.NoError(t, crashed.cmd.Process.Kill())
	dead := c.wait(crashed.ctx, crashed.cmd, crashed.stdout, crashed.stderr)
	crashed.cancel()
	require.True(t, dead.killed)

	// A live launch, held for a few seconds at the CA step: its networks,
	// sidecars and agent exist, it is not ready.
	slow := faults.Fault{Step: steps.IDCA, Kind: faults.KindSlow, Duration: 6 * time.Second}
	live := c.launchUntilAgent([]string{faults.EnvVar + "=" + slow.String()})
	defer live.cancel()
	before := c.resources(live.slug)

	st := c.states()
	assert.Equal(t, StateBroken, st[crashed.slug])
	assert.Equal(t, StateLaunching, st[live.slug])
	gc := c.run(nil, "gc")
	require.Equal(t, 0, gc.code, "gc: %s", gc.stderr)
	assert.Equal(t, []string{crashed.slug}, c.mine(gc.stdout), "gc removes the crashed bottle and nothing else")
	assert.Empty(t, c.resources(crashed.slug))
	assert.Equal(t, len(before), len(c.resources(live.slug)), "gc touched nothing of the live launch")
	assert.Equal(t, StateLaunching, c.states()[live.slug])

	res := c.wait(live.ctx, live.cmd, live.stdout, live.stderr)
	require.Equal(t, 0, res.code, "the live launch completes after gc: %s", res.stderr)
	assert.Equal(t, StateReady, c.states()[live.slug])
	require.Equal(t, 0, c.run(nil, "rm", live.slug).code)
	c.requireAllGone()
}

// runningLaunch is a launch process still running.
type runningLaunch struct {
	ctx            context.Context
	cancel         context.CancelFunc
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	slug           string
}

// launchUntilAgent starts a launch and returns once its agent container
// exists (polling the engine, bounded).
func (c *faultCLI) launchUntilAgent(env []string) *runningLaunch {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultCLITimeout)
	l := &runningLaunch{ctx: ctx, cancel: cancel}
	l.cmd, l.stdout, l.stderr = c.start(ctx, env, c.launchArgs()...)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if l.slug == "" {
			l.slug = cliRun{stderr: l.stderr.String()}.slug()
		}
		if l.slug != "" {
			for _, r := range c.resources(l.slug) {
				if r.Labels[backends.LabelRole] == "agent" && r.State == "running" {
					return l
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = l.cmd.Process.Kill()
	c.t.Fatalf("the launch did not boot its agent in time; stderr:\n%s", l.stderr.String())
	return nil
}

// syncBuffer is a buffer a process's output is copied into while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStateDirOfALaunchKilledBeforeItsRecordIsCollected(t *testing.T) {
	eng := &DockerEngine{Engine: testenv.RequireDocker(t)}
	root := t.TempDir()
	ctx := context.Background()
	// A launch killed between creating its dir and recording itself, one
	// killed while writing the record (before it was written aside), and
	// something that is no bottle's.
	bare, torn, hidden := "demo-kill1", "demo-kill2", ".not-a-bottle"
	for _, d := range []string{bare, torn, hidden} {
		require.NoError(t, os.Mkdir(filepath.Join(root, d), 0o700))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, torn, launchFile), []byte(`{"slug":"demo-`), 0o600))

	states := func() map[string]string {
		all, err := List(ctx, eng, nil, root)
		require.NoError(t, err)
		out := map[string]string{}
		for _, b := range all {
			if b.Slug == bare || b.Slug == torn || b.Slug == hidden {
				out[b.Slug] = b.State
			}
		}
		return out
	}
	// Young, they may be launches about to record themselves: spared.
	assert.Equal(t, map[string]string{bare: StateLaunching, torn: StateLaunching}, states())
	removed, err := GC(ctx, eng, nil, root)
	require.NoError(t, err)
	assert.NotContains(t, removed, bare)
	assert.NotContains(t, removed, torn)

	old := time.Now().Add(-2 * recordGrace)
	for _, d := range []string{bare, torn} {
		require.NoError(t, os.Chtimes(filepath.Join(root, d), old, old))
	}
	assert.Equal(t, map[string]string{bare: StateBroken, torn: StateBroken}, states())
	removed, err = GC(ctx, eng, nil, root)
	require.NoError(t, err)
	assert.Subset(t, removed, []string{bare, torn})
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, hidden, entries[0].Name(), "gc leaves what is no bottle's")
}

func TestFaultHookOnlyInFaultinjectBuilds(t *testing.T) {
	c := newFaultCLI(t)
	release := testenv.BottleBinary(t)
	for bin, want := range map[string]bool{release: false, c.bin: true} {
		data, err := os.ReadFile(bin)
		require.NoError(t, err)
		assert.Equal(t, want, bytes.Contains(data, []byte(faults.EnvVar)), "%s mentions $%s", filepath.Base(bin), faults.EnvVar)
	}

	// The tagged build refuses a malformed fault before launching.
	bad := c.run([]string{faults.EnvVar + "=boot:explode"}, c.launchArgs()...)
	assert.Equal(t, 2, bad.code, bad.stderr)
	assert.Contains(t, bad.stderr, `kind "explode"`)
	assert.Empty(t, c.stateDirs())

	// A release build launches as if the variable were not there.
	rel := *c
	rel.bin = release
	ok := rel.run([]string{faults.EnvVar + "=" + steps.IDBoot + ":error"}, c.launchArgs()...)
	require.Equal(t, 0, ok.code, ok.stderr)
	slug := strings.TrimSpace(ok.stdout)
	assert.Equal(t, StateReady, c.states()[slug])
	require.Equal(t, 0, c.run(nil, "rm", slug).code)
	c.requireAllGone()
}

func TestASlugCollisionNeverHarmsTheBottleAlreadyThere(t *testing.T) {
	testskip.Short(t, "integration test: launches bottles")
	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {Supervise: true}},
		Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev"}},
	}
	o, _ := dockerOptions(t, m, "demo", env{})
	// The same randomness twice: the second launch draws the first's slug.
	seed := []byte{0x5a, 0x11, 0x0c, 0x7e}
	o.Rand = bytes.NewReader(seed)
	var slug string
	o.OnPlanned = func(p *plan.Plan) { slug = p.Slug }
	removeAtEnd(t, o, &slug)
	first, _, err := Run(context.Background(), o)
	require.NoError(t, err)
	before := first.Plan.Slug
	ctx := context.Background()
	resBefore, err := o.Engine.List(ctx, backends.Labels{backends.LabelSlug: before})
	require.NoError(t, err)

	for _, root := range []string{o.StateRoot, t.TempDir()} {
		// Same state root, then another one (another user on the engine).
		o2 := o
		o2.StateRoot = root
		o2.Rand = bytes.NewReader(seed)
		var second string
		o2.OnPlanned = func(p *plan.Plan) { second = p.Slug }
		_, res, err := Run(ctx, o2)
		require.Equal(t, before, second, "the second launch drew the same slug")
		require.ErrorIs(t, err, ErrSlugTaken)
		assert.Nil(t, res, "it created nothing: no step ran")
		resAfter, lerr := o.Engine.List(ctx, backends.Labels{backends.LabelSlug: before})
		require.NoError(t, lerr)
		assert.Len(t, resAfter, len(resBefore), "the first bottle lost resources to the second launch")
		all, lerr := List(ctx, o.Engine, nil, o.StateRoot)
		require.NoError(t, lerr)
		found := false
		for _, b := range all {
			if b.Slug == before {
				found = true
				assert.Equal(t, StateReady, b.State, "%s: %s", b.Slug, b.Reason)
			}
		}
		assert.True(t, found, "the first bottle is gone")
	}
}
