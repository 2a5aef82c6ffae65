package launcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// benchUpstreamScript serves a bare repository with one commit over the git
// protocol: what the git gate mirrors when it starts. It is constant.
const benchUpstreamScript = `set -e
git init -q --bare -b main /srv/repo.git
git clone -q /srv/repo.git /tmp/seed
git -C /tmp/seed -c user.name=up -c user.email=up@example.com commit -q --allow-empty -m seed
git -C /tmp/seed push -q origin HEAD:main
exec git daemon --reuseaddr --export-all --base-path=/srv --listen=0.0.0.0
`

// benchManifest is a representative bottle: supervise, a git identity, a
// route that injects a token, an allowed host, a skill and a repository
// relayed by the git gate, so every kind of step is in the graph.
func benchManifest() *manifest.Manifest {
	return &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Git:       []manifest.GitEntry{{Name: "repo", Upstream: "git://upstream.test/repo.git"}},
			GitUser:   &manifest.GitUser{Name: "Dev Bot", Email: "dev@example.com"},
			Supervise: true,
			Egress:    &manifest.Egress{Routes: []manifest.Route{{Host: "api.test", TokenEnv: "BENCH_TOKEN"}}},
			Allow:     []string{"upstream.test"},
		}},
		Agents: map[string]*manifest.Agent{"bench": {Bottle: "dev", Prompt: "Fix the failing test.", Skills: []string{"verify"}}},
	}
}

// beforeGate runs a function before the wrapped step and forwards the
// step's optional abilities, so rollback and timeouts are unchanged.
type beforeGate struct {
	dag.Step
	before func(context.Context) error
}

func (h beforeGate) Run(ctx context.Context) error {
	if err := h.before(ctx); err != nil {
		return err
	}
	return h.Step.Run(ctx)
}

func (h beforeGate) Undo(ctx context.Context) error {
	if u, ok := h.Step.(dag.Undoer); ok {
		return u.Undo(ctx)
	}
	return nil
}

func (h beforeGate) Timeout() time.Duration {
	if t, ok := h.Step.(dag.Timeouter); ok {
		return t.Timeout()
	}
	return 0
}

// benchRig is what every launch of the benchmark shares: options on the
// real engine and an upstream that joins each bottle's outside network.
type benchRig struct {
	o        Options
	eng      *docker.Engine
	upstream string
}

func newBenchRig(b *testing.B) *benchRig {
	b.Helper()
	eng := testenv.RequireDocker(b)
	agentRef, sidecarRef := testenv.Images(b)
	skills := b.TempDir()
	if err := os.MkdirAll(filepath.Join(skills, "verify"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(skills, "verify", "SKILL.md"), []byte("# verify\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	e := env{"BENCH_TOKEN": "tok-bench-4f1e2d", manifest.SkillsDirEnv: skills}
	m := benchManifest()
	// $BOT_BOTTLE_BENCH_AGENT_IMAGE measures another local agent image
	// (an older build, say) with everything else the same.
	if ref := os.Getenv("BOT_BOTTLE_BENCH_AGENT_IMAGE"); ref != "" {
		m.Bottles["dev"].Image = ref
		b.Logf("agent image %s", ref)
	}
	r := &benchRig{eng: eng, o: Options{
		Manifest:  m,
		Agent:     "bench",
		Backend:   plan.BackendDocker,
		Version:   "bench",
		StateRoot: b.TempDir(),
		Getenv:    e.get,
		Home:      b.TempDir(),
		Engine:    &DockerEngine{Engine: eng},
		Images:    fixedImages{agentRef, sidecarRef},
	}}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	labels := testenv.Labels(b)
	testenv.Cleanup(b, eng, labels)
	net := testenv.Name("bbt-benchnet")
	if _, err := eng.CreateNetwork(ctx, backends.NetworkSpec{Name: net, Labels: labels}); err != nil {
		b.Fatal(err)
	}
	r.upstream = testenv.Name("bbt-benchup")
	if _, err := eng.CreateContainer(ctx, backends.ContainerSpec{
		Name: r.upstream, Image: testenv.BaseImage(b), Entrypoint: []string{"sh", "-c", benchUpstreamScript},
		Labels: labels, Networks: []backends.Attachment{{Network: net}}, Init: true,
	}); err != nil {
		b.Fatal(err)
	}
	if err := eng.StartContainer(ctx, r.upstream); err != nil {
		b.Fatal(err)
	}
	return r
}

// launch runs one launch to ready with at most maxParallel steps at once
// (0: no bound) and returns its result. The bottle is removed afterwards,
// outside the benchmark timer.
func (r *benchRig) launch(b *testing.B, maxParallel int) *dag.Result {
	b.Helper()
	o := r.o
	o.MaxParallel = maxParallel
	var p *plan.Plan
	o.OnPlanned = func(pl *plan.Plan) { p = pl }
	// The upstream joins the bottle's outside network, where the git gate
	// looks for it, just before the gate starts.
	o.Wrap = func(s dag.Step) dag.Step {
		if s.ID() != steps.IDSidecarGitGate {
			return s
		}
		return beforeGate{s, func(ctx context.Context) error {
			_, err := r.eng.Client().NetworkConnect(ctx, p.Names.Outside, client.NetworkConnectOptions{
				Container:      r.upstream,
				EndpointConfig: &network.EndpointSettings{Aliases: []string{"upstream.test"}},
			})
			return err
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, res, err := Run(ctx, o)
	b.StopTimer()
	defer b.StartTimer()
	if p != nil {
		rmCtx, rmCancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer rmCancel()
		if rmErr := RemoveSlug(rmCtx, o.Engine, nil, o.StateRoot, p.Slug); rmErr != nil {
			b.Fatalf("removing %s: %v", p.Slug, rmErr)
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// launchFigures accumulates the figures of the launches of one
// sub-benchmark.
type launchFigures struct {
	n                          int
	wall, critical, ratio, sum float64
	steps                      map[string]float64
	paths                      map[string]int // critical paths seen
}

func (f *launchFigures) add(res *dag.Result) {
	if f.steps == nil {
		f.steps, f.paths = map[string]float64{}, map[string]int{}
	}
	f.paths[strings.Join(res.CriticalPath, " > ")]++
	f.n++
	f.wall += res.Wall.Seconds()
	f.critical += res.CriticalPathDuration.Seconds()
	f.ratio += res.Wall.Seconds() / res.CriticalPathDuration.Seconds()
	for _, s := range res.Steps {
		f.sum += s.Duration.Seconds()
		f.steps[s.ID] += s.Duration.Seconds()
	}
}

func (f *launchFigures) report(b *testing.B) {
	n := float64(f.n)
	b.ReportMetric(f.wall/n, "wall-s")
	b.ReportMetric(f.critical/n, "critical-s")
	b.ReportMetric(f.ratio/n, "wall/critical")
	b.ReportMetric(f.sum/n, "sum-s")
	// Per-step means, slowest first: where the launch time goes.
	ids := make([]string, 0, len(f.steps))
	for id := range f.steps {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return f.steps[ids[i]] > f.steps[ids[j]] })
	var sb strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&sb, " %s=%.3fs", id, f.steps[id]/n)
	}
	b.Logf("%d launches, mean step durations:%s", f.n, sb.String())
	for path, n := range f.paths {
		b.Logf("critical path %s (%d of %d)", path, n, f.n)
	}
}

// BenchmarkLaunch measures launch-to-ready of a representative bottle on
// the Docker Engine, with the step graph run concurrently (parallel) and
// one step at a time (sequential, as --max-parallel 1). Each reports the
// mean wall time (wall-s), the mean critical path of the same launches
// (critical-s), the mean of their ratio (wall/critical: 1 means the
// launch took no longer than its dependencies force) and the mean sum of
// step durations (sum-s: the sequential cost of the same work).
//
//	go test -run '^$' -bench BenchmarkLaunch -benchtime 5x ./internal/launcher/
func BenchmarkLaunch(b *testing.B) {
	r := newBenchRig(b)
	for _, mode := range []struct {
		name        string
		maxParallel int
	}{{"parallel", 0}, {"sequential", 1}} {
		b.Run(mode.name, func(b *testing.B) {
			var f launchFigures
			for b.Loop() {
				f.add(r.launch(b, mode.maxParallel))
			}
			f.report(b)
		})
	}
}
