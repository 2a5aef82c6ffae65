package launcher

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines/smolmachinestest"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/faults"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// faultHang is the per-attempt timeout forced on a hanging step: short, so
// the whole matrix stays fast, long enough to be unmistakably the bound.
const faultHang = time.Second

// everyFaultKind is what the matrix injects into every step.
var everyFaultKind = []faults.Kind{faults.KindError, faults.KindPanic, faults.KindHang}

// everyStepManifest has every step of the launch graph (but the pipelock
// firewall, which is not wired): a git entry, a git identity, supervise,
// a route with a token and a skill; the launch adds --copy-cwd of a repo.
func everyStepManifest() *manifest.Manifest {
	return &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Git:       []manifest.GitEntry{{Name: "repo", Upstream: "git://upstream.test/repo.git"}},
			GitUser:   &manifest.GitUser{Name: "Fault Bot", Email: "fault@example.com"},
			Supervise: true,
			Egress:    &manifest.Egress{Routes: []manifest.Route{{Host: "api.test", TokenEnv: "TEST_TOKEN"}}},
			Allow:     []string{"upstream.test"},
		}},
		Agents: map[string]*manifest.Agent{"demo": {Bottle: "dev", Prompt: "Fix it.", Skills: []string{"verify"}}},
	}
}

// wantEveryStep is the graph everyStepManifest must produce.
var wantEveryStep = []string{
	steps.IDImage, steps.IDNetwork, steps.IDSidecarEgress, steps.IDSidecarGitGate, steps.IDSidecarSupervise,
	steps.IDBoot, steps.IDCA, steps.IDPrompt, steps.IDSkills, steps.IDWorkspace, steps.IDGitconfig,
	steps.IDGitUser, steps.IDSupervise,
}

// faultRig is what every launch of a fault matrix shares: the options
// (skills, a repo to copy, the token) and an upstream the git gate can
// mirror.
type faultRig struct {
	base     Options
	eng      *docker.Engine
	upstream string
	undoers  map[string]bool
}

// newFaultRig prepares launches of everyStepManifest on the given backend.
func newFaultRig(t *testing.T, backend string) *faultRig {
	t.Helper()
	testskip.Short(t, "integration test: launches bottles")
	skills := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(skills, "verify"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(skills, "verify", "SKILL.md"), []byte("# verify\n"), 0o644))
	e := env{"TEST_TOKEN": "tok-fault-3f9c", "BOT_BOTTLE_SKILLS_DIR": skills}
	o, eng := dockerOptions(t, everyStepManifest(), "demo", e)
	o.CopyCwd, o.Cwd = true, gitInit(t)
	o.UndoTimeout = time.Minute
	if backend == plan.BackendSmolmachines {
		o.Backend = plan.BackendSmolmachines
	}

	upNet := testNetwork(t, eng, "bbt-upnet")
	r := &faultRig{base: o, eng: eng}
	r.upstream = server(t, eng, upNet, nil, "sh", "-c", upstreamScript)
	return r
}

// smolMachines returns the smolmachines backend on its own simulator
// state, so each launch's smolvm processes can be told apart.
func (r *faultRig) smolMachines(t *testing.T, simEnv ...string) (*SmolMachines, *smolmachinestest.Sim) {
	t.Helper()
	sim := smolmachinestest.New(t, r.eng.Client(), simEnv...)
	cli := smolmachines.NewCLI(sim.Bin)
	cli.Env = sim.Env
	cache := filepath.Join(os.TempDir(), "bot-bottle-smolvm-test-cache")
	return &SmolMachines{CLI: cli, Images: r.eng.Client(), CacheDir: cache}, sim
}

// graphIDs returns the step IDs of the launch graph the options produce,
// without launching, and which of them undo what they acquire.
func graphIDs(t *testing.T, o Options) (ids []string, undoers map[string]bool) {
	t.Helper()
	p, err := plan.New(plan.Input{
		Manifest: o.Manifest, Agent: o.Agent, Backend: o.Backend, CopyCwd: o.CopyCwd, UserCwd: o.Cwd,
		Version: o.Version, StateRoot: t.TempDir(), Getenv: o.Getenv, Home: o.Home,
	})
	require.NoError(t, err)
	undoers = map[string]bool{}
	for _, s := range steps.Build(&steps.Launch{Plan: p}) {
		ids = append(ids, s.ID())
		_, undoers[s.ID()] = s.(dag.Undoer)
	}
	return ids, undoers
}

// withUpstream wraps the git gate step so the upstream joins the bottle's
// outside network just before the gate mirrors it. The wrapper forwards
// every optional ability of the step.
func (r *faultRig) withUpstream(p **plan.Plan) func(dag.Step) dag.Step {
	return func(s dag.Step) dag.Step {
		if s.ID() != steps.IDSidecarGitGate {
			return s
		}
		return &beforeStep{Step: s, before: func(ctx context.Context) error {
			// The daemon finishes a connect whose request was abandoned:
			// let it finish, so the rollback never races it.
			if err := connect(context.WithoutCancel(ctx), r.eng, r.upstream, (*p).Names.Outside, "upstream.test"); err != nil {
				return err
			}
			return ctx.Err()
		}}
	}
}

// beforeStep runs a function before a step, forwarding Undo, RetryPolicy
// and Timeout.
type beforeStep struct {
	dag.Step
	before func(context.Context) error
}

func (b *beforeStep) Run(ctx context.Context) error {
	if err := b.before(ctx); err != nil {
		return err
	}
	return b.Step.Run(ctx)
}

func (b *beforeStep) Undo(ctx context.Context) error {
	if u, ok := b.Step.(dag.Undoer); ok {
		return u.Undo(ctx)
	}
	return nil
}

func (b *beforeStep) RetryPolicy() *dag.RetryPolicy {
	if r, ok := b.Step.(dag.Retrier); ok {
		return r.RetryPolicy()
	}
	return nil
}

func (b *beforeStep) Timeout() time.Duration {
	if to, ok := b.Step.(dag.Timeouter); ok {
		return to.Timeout()
	}
	return 0
}

// faultOutcome is one launch of the matrix.
type faultOutcome struct {
	fault    faults.Fault
	slug     string
	err      error
	wall     time.Duration
	procLeft []int
}

// launchWithFault runs one launch with fault injected and asserts that it
// failed naming the step and the cause, and that nothing of it is left.
func (r *faultRig) launchWithFault(t *testing.T, f faults.Fault) faultOutcome {
	t.Helper()
	o := r.base
	var p *plan.Plan
	var slug string
	o.OnPlanned = func(pl *plan.Plan) { p, slug = pl, pl.Slug }
	var sim *smolmachinestest.Sim
	if o.Backend == plan.BackendSmolmachines {
		o.Machines, sim = r.smolMachines(t)
	}
	removeAtEnd(t, o, &slug)
	upstream := r.withUpstream(&p)
	o.Wrap = func(s dag.Step) dag.Step { return f.Wrap(upstream(s)) }

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	_, res, err := Run(ctx, o)
	out := faultOutcome{fault: f, slug: slug, err: err, wall: time.Since(start)}

	require.Error(t, err, "the launch must fail")
	require.NotNil(t, res)
	var se *dag.StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, f.Step, se.Step, "the error names the faulted step: %v", err)
	assert.False(t, se.Cancelled)
	assert.Empty(t, se.UndoErrors, "the rollback itself failed: %v", err)
	assert.NotContains(t, err.Error(), "cleanup:", "the label sweep failed")
	assert.ErrorIs(t, err, faults.ErrInjected)
	assert.Contains(t, err.Error(), fmt.Sprintf("step %q failed", f.Step))
	switch f.Kind {
	case faults.KindError:
		assert.Contains(t, err.Error(), "injected error")
	case faults.KindPanic:
		var pe *dag.PanicError
		require.ErrorAs(t, err, &pe, "a panic is reported as one")
		fe, ok := pe.Value.(*faults.Error)
		require.True(t, ok, "the panic value is kept: %#v", pe.Value)
		assert.Equal(t, f.Step, fe.Step)
		assert.Contains(t, err.Error(), "panic: injected panic")
	case faults.KindHang:
		var te *dag.TimeoutError
		require.ErrorAs(t, err, &te, "a hang ends at its timeout")
		assert.Equal(t, faultHang, te.After)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "timed out after 1s")
	}
	sr, ok := res.Step(f.Step)
	require.True(t, ok)
	assert.Equal(t, dag.OutcomeFailed, sr.Outcome)
	for _, s := range res.Steps {
		// Steps that acquire nothing (images, guest provisioning) have
		// nothing to undo and stay ok; the agent they changed is gone.
		if r.undoers[s.ID] {
			assert.NotEqual(t, dag.OutcomeOK, s.Outcome, "step %s was left done, not rolled back", s.ID)
		}
		assert.NotEqual(t, dag.OutcomeUndoFailed, s.Outcome, "step %s", s.ID)
	}

	require.NotEmpty(t, slug)
	requireNothingLeft(t, o.Engine, o.StateRoot, slug)
	if sim != nil {
		ms, err := o.Machines.(*SmolMachines).CLI.Resources(context.Background(), backends.Labels{backends.LabelSlug: slug})
		require.NoError(t, err)
		assert.Empty(t, ms, "machines of %s left behind", slug)
		// The simulator runs each machine as a container labelled with
		// its state dir: the machine's VM, which must be gone too.
		vms, err := r.eng.Client().ContainerList(context.Background(), client.ContainerListOptions{
			All: true, Filters: make(client.Filters).Add("label", "smolvmsim.state="+sim.StateDir),
		})
		require.NoError(t, err)
		assert.Empty(t, vms.Items, "the VM of %s left running", slug)
		// Every smolvm process this launch ran carries its simulator
		// state in its environment: none may outlive the launch.
		out.procLeft = processesWithEnv("SMOLVM_SIM_STATE=" + sim.StateDir)
		assert.Empty(t, out.procLeft, "smolvm processes of %s still alive", slug)
	}
	return out
}

// runFaultMatrix injects every fault kind into every step of the graph,
// two launches at a time, and reports the count and the time.
func runFaultMatrix(t *testing.T, backend string) {
	r := newFaultRig(t, backend)
	ids, undoers := graphIDs(t, r.base)
	r.undoers = undoers
	require.ElementsMatch(t, wantEveryStep, ids, "the manifest must produce every step of the graph")
	childrenBefore := childProcesses()

	var mu sync.Mutex
	var outcomes []faultOutcome
	start := time.Now()
	t.Run("faults", func(t *testing.T) {
		for _, id := range ids {
			for _, kind := range everyFaultKind {
				f := faults.Fault{Step: id, Kind: kind}
				if kind == faults.KindHang {
					f.Duration = faultHang
				}
				t.Run(strings.ReplaceAll(id, ":", "_")+"/"+string(kind), func(t *testing.T) {
					t.Parallel()
					o := r.launchWithFault(t, f)
					mu.Lock()
					outcomes = append(outcomes, o)
					mu.Unlock()
				})
			}
		}
	})
	total := time.Since(start)
	slices.SortFunc(outcomes, func(a, b faultOutcome) int { return strings.Compare(a.fault.String(), b.fault.String()) })
	var slowest faultOutcome
	for _, o := range outcomes {
		if o.wall > slowest.wall {
			slowest = o
		}
	}
	t.Logf("%s: %d faulted launches (%d steps x %d kinds) in %s; slowest %s (%s)",
		backend, len(outcomes), len(ids), len(everyFaultKind), total.Round(time.Millisecond), slowest.fault, slowest.wall.Round(time.Millisecond))
	assert.Len(t, outcomes, len(ids)*len(everyFaultKind))

	// The launcher starts no host process that outlives a launch (docker:
	// none at all; smolmachines: the smolvm CLI calls, all waited for).
	assert.ElementsMatch(t, childrenBefore, childProcesses(), "child processes left by the launches")
	assert.Empty(t, leakedGoroutines(5*time.Second), "goroutines of the launch code left running")
}

func TestDockerEveryStepEveryFaultRollsBack(t *testing.T) {
	runFaultMatrix(t, plan.BackendDocker)
}

func TestSmolmachinesEveryStepEveryFaultRollsBack(t *testing.T) {
	runFaultMatrix(t, plan.BackendSmolmachines)
}

// childProcesses returns the pids of this process's live children.
func childProcesses() []int {
	var out []int
	self := os.Getpid()
	forEachProcess(func(pid int, stat string, _ func() []byte) {
		if ppid, ok := statField(stat, 4); ok && ppid == strconv.Itoa(self) {
			out = append(out, pid)
		}
	})
	return out
}

// processesWithEnv returns the pids of live processes whose environment
// holds the entry kv.
func processesWithEnv(kv string) []int {
	var out []int
	want := []byte(kv)
	forEachProcess(func(pid int, _ string, environ func() []byte) {
		for _, e := range bytes.Split(environ(), []byte{0}) {
			if bytes.Equal(e, want) {
				out = append(out, pid)
				return
			}
		}
	})
	return out
}

func forEachProcess(fn func(pid int, stat string, environ func() []byte)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		fn(pid, string(stat), func() []byte {
			b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
			return b
		})
	}
}

// statField returns field n (1-based, as in proc(5)) of a /proc/<pid>/stat
// line; the command name may hold spaces, so fields are counted after its
// closing parenthesis.
func statField(stat string, n int) (string, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || n < 3 {
		return "", false
	}
	fields := strings.Fields(stat[i+1:])
	if len(fields) < n-2 {
		return "", false
	}
	return fields[n-3], true
}

// leakedGoroutines returns the stacks of goroutines running this
// module's non-test code, waiting up to grace for them to wind down.
func leakedGoroutines(grace time.Duration) []string {
	deadline := time.Now().Add(grace)
	for {
		var leaked []string
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "github.com/bot-bottle/bot-bottle/") && !strings.Contains(g, "testing.tRunner") && !strings.Contains(g, "_test.go") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestWaitForLogLeavesNoGoroutineWhenTheLogGoesOn(t *testing.T) {
	testskip.Short(t, "integration test: needs the Docker Engine")
	eng := testenv.RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	labels := testenv.Labels(t)
	testenv.Cleanup(t, eng, labels)
	name := testenv.Name("bbt-chatty")
	// Ready, then a flood of output: the copier is mid-write when the
	// wait returns.
	_, err := eng.CreateContainer(ctx, backends.ContainerSpec{
		Name: name, Image: testenv.BaseImage(t), Labels: labels,
		Entrypoint: []string{"sh", "-c", `printf '%s\n' '{"msg":"ready"}' $(seq 1 20000); sleep 60`},
	})
	require.NoError(t, err)
	require.NoError(t, eng.StartContainer(ctx, name))
	d := &DockerEngine{Engine: eng}
	require.NoError(t, d.WaitForLog(ctx, name, func(line []byte) bool { return bytes.Contains(line, []byte(`"msg":"ready"`)) }))
	var ours []string
	for _, g := range leakedGoroutines(3 * time.Second) {
		if strings.Contains(g, "WaitForLog") {
			ours = append(ours, g)
		}
	}
	assert.Empty(t, ours, "the log copier outlived the wait")
}

func TestCancelledCreatesAreNotAbandoned(t *testing.T) {
	testskip.Short(t, "integration test: needs the Docker Engine")
	eng := testenv.RequireDocker(t)
	img := testenv.BaseImage(t)
	labels := testenv.Labels(t)
	testenv.Cleanup(t, eng, labels)
	exists := func(kind, name string) bool {
		res, err := eng.List(context.Background(), labels)
		require.NoError(t, err)
		for _, r := range res {
			if r.Kind == kind && r.Name == name {
				return true
			}
		}
		return false
	}
	// Ctrl-C at various moments of a create: the daemon finishes a create
	// whose request was dropped, so a create that reports failure must
	// really have made nothing, or an undo trusting it leaves a leak.
	for _, after := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(after, cancel)
		netName, ctrName := testenv.Name("bbt-cancel"), testenv.Name("bbt-cancel")
		_, netErr := eng.CreateNetwork(ctx, backends.NetworkSpec{Name: netName, Labels: labels})
		ctx2, cancel2 := context.WithCancel(context.Background())
		stop2 := time.AfterFunc(after, cancel2)
		_, ctrErr := eng.CreateContainer(ctx2, backends.ContainerSpec{Name: ctrName, Image: img, Entrypoint: []string{"sleep", "60"}, Labels: labels})
		stop.Stop()
		stop2.Stop()
		cancel()
		cancel2()
		time.Sleep(time.Second) // what the daemon was still doing is done
		assert.Equal(t, netErr == nil, exists(KindNetwork, netName), "network, cancelled after %s: create said %v", after, netErr)
		assert.Equal(t, ctrErr == nil, exists(KindContainer, ctrName), "container, cancelled after %s: create said %v", after, ctrErr)
	}
}

func TestSmolmachinesCtrlCDuringBootLeavesNoVM(t *testing.T) {
	r := newFaultRig(t, plan.BackendSmolmachines)
	// Ctrl-C at several moments of `smolvm machine create` and `start`.
	for _, after := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond} {
		t.Run(after.String(), func(t *testing.T) {
			o := r.base
			var p *plan.Plan
			var slug string
			o.OnPlanned = func(pl *plan.Plan) { p, slug = pl, pl.Slug }
			var sim *smolmachinestest.Sim
			o.Machines, sim = r.smolMachines(t)
			removeAtEnd(t, o, &slug)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			upstream := r.withUpstream(&p)
			o.Wrap = func(s dag.Step) dag.Step {
				s = upstream(s)
				if s.ID() != steps.IDBoot {
					return s
				}
				return &beforeStep{Step: s, before: func(context.Context) error {
					time.AfterFunc(after, cancel)
					return nil
				}}
			}
			_, _, err := Run(ctx, o)
			require.Error(t, err)
			var se *dag.StepError
			require.ErrorAs(t, err, &se)
			assert.True(t, se.Cancelled, "%v", err)
			assert.ErrorIs(t, err, dag.ErrCancelled)
			assert.Empty(t, se.UndoErrors)
			assert.NotContains(t, err.Error(), "cleanup:")
			time.Sleep(time.Second) // anything the daemon was still doing is done
			requireNothingLeft(t, o.Engine, o.StateRoot, slug)
			vms, lerr := r.eng.Client().ContainerList(context.Background(), client.ContainerListOptions{
				All: true, Filters: make(client.Filters).Add("label", "smolvmsim.state="+sim.StateDir),
			})
			require.NoError(t, lerr)
			assert.Empty(t, vms.Items, "the VM of %s left running (cancelled in %s)", slug, se.Step)
			ms, lerr := o.Machines.(*SmolMachines).CLI.Resources(context.Background(), nil)
			require.NoError(t, lerr)
			assert.Empty(t, ms, "machines left")
			assert.Empty(t, processesWithEnv("SMOLVM_SIM_STATE="+sim.StateDir), "smolvm processes left")
			t.Logf("cancelled %s into boot: interrupted %q", after, se.Step)
		})
	}
}

func TestSmolmachinesFaultOnARetriedAttempt(t *testing.T) {
	r := newFaultRig(t, plan.BackendSmolmachines)
	o := r.base
	var p *plan.Plan
	var slug string
	o.OnPlanned = func(pl *plan.Plan) { p, slug = pl, pl.Slug }
	// Every exec and cp in the first moments after the machine starts
	// loses the warm-up race: the first attempt of each guest step fails
	// with it and is retried, and the fault strikes the prompt's retry.
	var sim *smolmachinestest.Sim
	o.Machines, sim = r.smolMachines(t, "SMOLVM_SIM_RACE_P=1", "SMOLVM_SIM_RACE_MS=400")
	removeAtEnd(t, o, &slug)
	f := faults.Fault{Step: steps.IDPrompt, Kind: faults.KindError, Attempt: 2}
	upstream := r.withUpstream(&p)
	o.Wrap = func(s dag.Step) dag.Step { return f.Wrap(upstream(s)) }
	_, res, err := Run(context.Background(), o)
	require.Error(t, err)
	var se *dag.StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, steps.IDPrompt, se.Step)
	assert.Equal(t, 2, se.Attempts, "the retry policy came through the wrapper")
	var fe *faults.Error
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, 2, fe.Attempt)
	sr, ok := res.Step(steps.IDPrompt)
	require.True(t, ok)
	require.Len(t, sr.AttemptSpans, 2)
	assert.Contains(t, sr.AttemptSpans[0].Err, "137", "the first attempt lost the warm-up race")
	assert.Empty(t, se.UndoErrors)
	requireNothingLeft(t, o.Engine, o.StateRoot, slug)
	assert.Empty(t, processesWithEnv("SMOLVM_SIM_STATE="+sim.StateDir))
}
