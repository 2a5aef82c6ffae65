package launcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines/smolmachinestest"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// raceWindow is how long after a machine starts the simulator may kill an
// exec or cp (SMOLVM_SIM_RACE_MS). It is shorter than the warm-up retry
// budget (about 7.5 s of backoff), so a launch always outlasts it.
const raceWindow = 3 * time.Second

// raceSeed fixes the simulator's race draws.
const raceSeed = "20240611"

// smolUpstreamScript runs in the upstream container: a bare repository
// with one commit served by git daemon, and the echo server on plain HTTP.
// It is constant; nothing user-supplied reaches it.
const smolUpstreamScript = `set -e
git init -q --bare -b main /srv/repo.git
git clone -q /srv/repo.git /tmp/seed
git -C /tmp/seed -c user.name=up -c user.email=up@example.com commit -q --allow-empty -m seed
git -C /tmp/seed push -q origin HEAD:main
/testserver -http :80 &
exec git daemon --reuseaddr --export-all --base-path=/srv --listen=0.0.0.0
`

// guestSteps are the steps that talk to the guest, the ones exposed to the
// warm-up race.
var guestSteps = []string{steps.IDCA, steps.IDPrompt, steps.IDSkills, steps.IDWorkspace, steps.IDGitconfig, steps.IDGitUser, steps.IDSupervise}

// TestSmolMachinesLaunchProvisionsTheAgent launches a full bottle on the
// smolmachines backend with the warm-up race injected: guest steps are
// killed at random during the first seconds and retried, and the launch
// still ends provisioned. Everything is then checked from inside the guest,
// which reaches the sidecars only through their ports published on host
// loopback.
func TestSmolMachinesLaunchProvisionsTheAgent(t *testing.T) {
	skills := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(skills, "verify"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(skills, "verify", "SKILL.md"), []byte("# verify\n"), 0o644))
	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Git:       []manifest.GitEntry{{Name: "repo", Upstream: "git://upstream.test/repo.git"}},
			GitUser:   &manifest.GitUser{Name: "Dev Bot", Email: "dev@example.com"},
			Supervise: true,
			Allow:     []string{"upstream.test"},
		}},
		Agents: map[string]*manifest.Agent{"demo": {Bottle: "dev", Prompt: "Fix the failing test.", Skills: []string{"verify"}}},
	}
	o, eng, sim := smolOptions(t, m, "demo", env{"BOT_BOTTLE_SKILLS_DIR": skills},
		"SMOLVM_SIM_RACE_P=0.5", "SMOLVM_SIM_RACE_MS="+strconv.Itoa(int(raceWindow.Milliseconds())), "SMOLVM_SIM_SEED="+raceSeed)

	ctx := context.Background()
	testNet := testNetwork(t, eng, "bbt-upnet")
	upstream := server(t, eng, testNet, nil, "sh", "-c", smolUpstreamScript)
	var slug string
	var p *plan.Plan
	o.OnPlanned = func(pl *plan.Plan) { p, slug = pl, pl.Slug }
	o.Wrap = func(s dag.Step) dag.Step {
		if s.ID() != steps.IDSidecarGitGate {
			return s
		}
		return hook{s, func(ctx context.Context) error { return connect(ctx, eng, upstream, p.Names.Outside, "upstream.test") }}
	}
	events := &dagtest.EventLog{}
	o.Observers = []dag.Observer{events}
	removeAtEnd(t, o, &slug)

	start := time.Now()
	launched, res, err := Run(ctx, o)
	require.NoError(t, err)
	require.NotNil(t, res)
	t.Logf("smolmachines launch with the race on: %s (critical path %s)", time.Since(start).Round(time.Millisecond), res.CriticalPathDuration.Round(time.Millisecond))

	t.Run("retries recorded", func(t *testing.T) {
		retried := 0
		for _, s := range res.Steps {
			assert.Equal(t, dag.OutcomeOK, s.Outcome, s.ID)
			t.Logf("%-18s start %6s took %6s, %d attempt(s)", s.ID, s.Start.Round(time.Millisecond), s.Duration.Round(time.Millisecond), s.Attempts)
			if s.Attempts > 1 {
				assert.Contains(t, guestSteps, s.ID, "only guest steps retry")
				retried += s.Attempts - 1
			}
			assert.Len(t, events.Of(dag.EventRetrying, s.ID), s.Attempts-1, "%s: one retrying event per failed attempt", s.ID)
		}
		assert.Positive(t, retried, "the race was injected and retried")
		// Every retry was caused by an injected kill, and every injected
		// kill was retried.
		killed := 0
		for _, inv := range sim.Log(t) {
			if inv.Race {
				killed++
				assert.Equal(t, smolmachines.MachineName(slug), inv.Machine)
				assert.Contains(t, []string{"exec", "cp"}, inv.Subcommand())
			}
		}
		assert.Equal(t, killed, retried, "injected kills vs retries")
		t.Logf("retries: %d", retried)
	})

	// The test's own execs must not meet the race either: wait out its
	// window, counted from boot's end (the machine started before that).
	boot := events.Of(dag.EventSucceeded, steps.IDBoot)
	require.Len(t, boot, 1)
	time.Sleep(time.Until(boot[0].Time.Add(raceWindow)))
	g := o.Machines.Guest(launched.Plan.Names.Machine)
	published := func(container string, port int) int {
		hp, err := eng.PublishedPort(ctx, container, port)
		require.NoError(t, err)
		return hp
	}

	t.Run("guest steps are safe to run again", func(t *testing.T) {
		// A warm-up kill can land after an exec did its work; the retry
		// then runs the whole step again over it.
		var wg sync.WaitGroup
		for _, s := range steps.Build(launched.Launch) {
			if slices.Contains(guestSteps, s.ID()) {
				wg.Go(func() { assert.NoError(t, s.Run(ctx), s.ID()) })
			}
		}
		wg.Wait()
	})

	t.Run("git identity and gate rewrites in any order", func(t *testing.T) {
		// Retries reorder gitconfig and git_user. Rewrites first, then the
		// identity, then the rewrites again: the identity must survive.
		run(t, g, "rm", "-f", plan.GuestGitconfig)
		gitconfig, gitUser := steps.NewGitconfig(launched.Launch), steps.NewGitUser(launched.Launch)
		require.NoError(t, gitconfig.Run(ctx))
		require.NoError(t, gitUser.Run(ctx))
		require.NoError(t, gitconfig.Run(ctx))
		assert.Equal(t, "Dev Bot", runAsNode(t, g, "git", "config", "--file", plan.GuestGitconfig, "user.name"))
		assert.Equal(t, "node:node", run(t, g, "stat", "-c", "%U:%G", plan.GuestGitconfig))
	})
	t.Run("prompt", func(t *testing.T) {
		assert.Equal(t, "node:node 600", run(t, g, "stat", "-c", "%U:%G %a", plan.GuestPromptPath))
		assert.Equal(t, "Fix the failing test.", run(t, g, "cat", plan.GuestPromptPath))
	})
	t.Run("skills", func(t *testing.T) {
		assert.Equal(t, "node:node", run(t, g, "stat", "-c", "%U:%G", "/home/node/.claude/skills/verify/SKILL.md"))
		assert.Equal(t, "# verify", run(t, g, "cat", "/home/node/.claude/skills/verify/SKILL.md"))
	})
	t.Run("ca in the trust store", func(t *testing.T) {
		assert.Equal(t, plan.GuestCAPath, run(t, g, "readlink", "/etc/ssl/certs/bot-bottle-ca.pem"))
		caPEM, err := os.ReadFile(filepath.Join(o.StateRoot, slug, "egress", "ca.pem"))
		require.NoError(t, err)
		// Once, though the CA step ran twice.
		assert.Equal(t, 1, strings.Count(run(t, g, "cat", plan.GuestCABundle), strings.TrimSpace(string(caPEM))))
	})
	t.Run("git identity", func(t *testing.T) {
		assert.Equal(t, "Dev Bot", runAsNode(t, g, "git", "config", "--global", "user.name"))
		assert.Equal(t, "dev@example.com", runAsNode(t, g, "git", "config", "--global", "user.email"))
	})
	t.Run("gitconfig points at the gate on host loopback", func(t *testing.T) {
		gate := fmt.Sprintf("127.0.0.1:%d", published(p.Names.GitGate, plan.GitGatePort))
		addr, ok := launched.Launch.SidecarAddr(plan.RoleGitGate)
		require.True(t, ok)
		assert.Equal(t, gate, addr)
		assert.Equal(t, "git://upstream.test/repo.git", runAsNode(t, g, "git", "config", "--get", "url.git://"+gate+"/repo.git.insteadof"))
		// The upstream's own URL reaches the upstream through the gate.
		runAsNode(t, g, "git", "clone", "-q", "git://upstream.test/repo.git", "/home/node/clone")
		assert.Equal(t, "seed", runAsNode(t, g, "git", "-C", "/home/node/clone", "log", "-1", "--format=%s"))
	})
	t.Run("supervise registered at its loopback port", func(t *testing.T) {
		port := published(p.Names.Supervise, plan.SupervisePort)
		cfg := run(t, g, "cat", "/home/node/.claude.json")
		assert.Contains(t, cfg, fmt.Sprintf(`"url": "http://127.0.0.1:%d/mcp"`, port))
		assert.Equal(t, "node:node", run(t, g, "stat", "-c", "%U:%G", "/home/node/.claude.json"))
		code, out := tryRun(t, g, "nc", "-z", "-w", "3", "127.0.0.1", strconv.Itoa(port))
		assert.Equal(t, 0, code, out)
	})
	t.Run("egress is the proxy, on its loopback port", func(t *testing.T) {
		proxy := fmt.Sprintf("http://127.0.0.1:%d", published(p.Names.Egress, plan.EgressPort))
		assert.Equal(t, proxy, run(t, g, "printenv", "HTTPS_PROXY"))
		assert.Equal(t, proxy, run(t, g, "printenv", "http_proxy"))
		out := runAsNode(t, g, "curl", "-sS", "-m", "10", "http://upstream.test/hello")
		assert.Contains(t, out, `"path":"/hello"`)
		// A host off the allowlist is refused by the proxy.
		code, out := tryRun(t, g, "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://other.test/")
		assert.Equal(t, 0, code)
		assert.Equal(t, "403", strings.TrimSpace(out))
	})

	require.NoError(t, RemoveSlug(ctx, o.Engine, o.Machines, o.StateRoot, slug))
	requireNothingLeft(t, o.Engine, o.StateRoot, slug)
	requireNoMachine(t, eng.Client(), sim, slug)
}

// TestSmolMachinesRaceBeyondTheBudgetFailsCleanly keeps the race on for
// every exec and cp: the first guest step exhausts its warm-up budget, the
// launch fails naming it, and the rollback leaves no machine, container,
// network, volume or state dir behind.
func TestSmolMachinesRaceBeyondTheBudgetFailsCleanly(t *testing.T) {
	o, eng, sim := smolOptions(t, &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {}},
		Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev", Prompt: "p"}},
	}, "demo", env{}, "SMOLVM_SIM_RACE_P=1", "SMOLVM_SIM_RACE_MS=600000", "SMOLVM_SIM_SEED="+raceSeed)
	var slug string
	o.OnPlanned = func(pl *plan.Plan) { slug = pl.Slug }
	events := &dagtest.EventLog{}
	o.Observers = []dag.Observer{events}
	removeAtEnd(t, o, &slug)

	start := time.Now()
	_, res, err := Run(context.Background(), o)
	t.Logf("failed launch with the race always on: %s", time.Since(start).Round(time.Millisecond))
	require.Error(t, err)
	var se *dag.StepError
	require.ErrorAs(t, err, &se)
	assert.False(t, se.Cancelled)
	assert.Contains(t, guestSteps, se.Step)
	assert.Equal(t, smolmachines.WarmupRetryPolicy().Attempts(), se.Attempts, "the whole budget was spent")
	assert.True(t, smolmachines.IsWarmupRace(err), "it failed on the race: %v", err)
	require.NotNil(t, res)
	failed, ok := res.Step(se.Step)
	require.True(t, ok)
	assert.Equal(t, dag.OutcomeFailed, failed.Outcome)
	assert.Len(t, events.Of(dag.EventRetrying, se.Step), se.Attempts-1)
	t.Logf("%s failed after %d attempts", se.Step, se.Attempts)
	for _, s := range res.Steps {
		if slices.Contains(guestSteps, s.ID) {
			assert.NotEqual(t, dag.OutcomeOK, s.Outcome, "%s cannot succeed while every exec is killed", s.ID)
		}
	}
	bootRes, ok := res.Step(steps.IDBoot)
	require.True(t, ok)
	assert.Equal(t, dag.OutcomeUndone, bootRes.Outcome, "the machine was rolled back")

	requireNothingLeft(t, o.Engine, o.StateRoot, slug)
	requireNoMachine(t, eng.Client(), sim, slug)
}

// requireNoMachine asserts that the simulator knows no machine of the slug
// and runs no container for it.
func requireNoMachine(t *testing.T, api *client.Client, sim *smolmachinestest.Sim, slug string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := smolmachines.NewCLI(sim.Bin)
	cli.Env = sim.Env
	infos, err := cli.List(ctx)
	require.NoError(t, err)
	name := smolmachines.MachineName(slug)
	for _, m := range infos {
		assert.NotEqual(t, name, m.Name, "machine %s left behind", name)
		assert.NotEqual(t, slug, m.Labels[backends.LabelSlug], "machine %s of %s left behind", m.Name, slug)
	}
	list, err := api.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", "smolvmsim.state="+sim.StateDir),
	})
	require.NoError(t, err)
	var names []string
	for _, c := range list.Items {
		names = append(names, c.Names...)
	}
	assert.False(t, slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, name) }), "machine container left: %v", names)
}
