package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/metrics"
)

// metricFamilies are the families every launch exposes.
var metricFamilies = []string{
	metrics.StepDurationName,
	metrics.StepAttemptsName,
	metrics.StepRetriesName,
	metrics.LaunchDurationName,
	metrics.LaunchCriticalPathName,
	metrics.LaunchesName,
}

// stepFamilies are the families labelled by step.
var stepFamilies = []string{metrics.StepDurationName, metrics.StepAttemptsName, metrics.StepRetriesName}

// fakePushgateway records what is pushed to it, answering like the real
// one (200 on PUT).
type fakePushgateway struct {
	*httptest.Server
	mu     sync.Mutex
	pushes []push
}

type push struct {
	method, path, contentType string
	body                      []byte
}

func newFakePushgateway(t *testing.T) *fakePushgateway {
	g := &fakePushgateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		g.mu.Lock()
		g.pushes = append(g.pushes, push{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), body})
		g.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *fakePushgateway) all() []push {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.pushes)
}

func timingsSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(metrics.TimingsSchema()))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource("timings.schema.json", doc))
	sch, err := c.Compile("timings.schema.json")
	require.NoError(t, err)
	return sch
}

// validTimings validates one timings document against the published schema
// and decodes it.
func validTimings(t *testing.T, sch *jsonschema.Schema, raw []byte) metrics.Timings {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	require.NoError(t, sch.Validate(inst), "%s", raw)
	var tm metrics.Timings
	require.NoError(t, json.Unmarshal(raw, &tm))
	return tm
}

func stepIDsOf(tm metrics.Timings) []string {
	var ids []string
	for _, s := range tm.Steps {
		ids = append(ids, s.ID)
	}
	return ids
}

// parseExposition parses the Prometheus text format.
func parseExposition(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	require.NoError(t, err, "%s", b)
	return mfs
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// seriesByStep indexes a step-labelled family by its step label.
func seriesByStep(t *testing.T, mf *dto.MetricFamily) map[string]*dto.Metric {
	t.Helper()
	out := map[string]*dto.Metric{}
	for _, m := range mf.GetMetric() {
		step := labelsOf(m)["step"]
		require.NotEmpty(t, step, "%s has a series without a step label", mf.GetName())
		out[step] = m
	}
	return out
}

// requireFamilies checks that every launch family is there and that the
// step-labelled ones carry a series for each step.
func requireFamilies(t *testing.T, mfs map[string]*dto.MetricFamily, steps []string) {
	t.Helper()
	for _, name := range metricFamilies {
		require.Contains(t, mfs, name)
	}
	for _, name := range stepFamilies {
		got := seriesByStep(t, mfs[name])
		assert.ElementsMatch(t, steps, keys(got), name)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// traceSlices returns, per name, the complete ("X") slices of a Chrome
// trace.
func traceSlices(t *testing.T, raw []byte) map[string][]map[string]any {
	t.Helper()
	var doc struct {
		TraceEvents []map[string]any `json:"traceEvents"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc), "the trace is not JSON")
	out := map[string][]map[string]any{}
	for _, ev := range doc.TraceEvents {
		if ev["ph"] == "X" {
			name, _ := ev["name"].(string)
			out[name] = append(out[name], ev)
		}
	}
	return out
}

// ganttSteps parses the SVG with encoding/xml (which fails on anything not
// well-formed) and returns the data-step of every step row and every
// text the chart shows.
func ganttSteps(t *testing.T, raw []byte) (rows []string, text string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(raw))
	var sb strings.Builder
	sawSVG := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "the Gantt chart is not well-formed XML")
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "svg" {
				sawSVG = true
			}
			if el.Name.Local != "g" {
				continue
			}
			var class, step string
			for _, a := range el.Attr {
				switch a.Name.Local {
				case "class":
					class = a.Value
				case "data-step":
					step = a.Value
				}
			}
			if class == "step" {
				rows = append(rows, step)
			}
		case xml.CharData:
			sb.Write(el)
			sb.WriteByte('\n')
		}
	}
	require.True(t, sawSVG, "no <svg> element")
	return rows, sb.String()
}

// plainLine is one line of --progress plain: "15:04:05.000 +1.234s STEP WHAT".
var plainLine = regexp.MustCompile(`^(\d{2}:\d{2}:\d{2}\.\d{3}) \+(\d+\.\d{3})s (\S+) (.+)$`)

type progressEvent struct {
	offset     float64
	step, what string
}

func TestLaunchWritesEveryTimingOutput(t *testing.T) {
	c := newDockerCLI(t, "BOTTLE_TEST_TOKEN=tok-5d0c8a1e7f")
	agent := uniqueAgent("demo")
	c.removeAgentAtEnd(agent)
	m := c.write("bottle.yaml", representativeManifest(agent))
	steps := c.planSteps(agent, m)
	gw := newFakePushgateway(t)
	require.True(t, strings.HasPrefix(gw.URL, "http://127.0.0.1:"), gw.URL)
	T, R, G, P := c.path("timings.json"), c.path("trace.json"), c.path("launch.svg"), c.path("launch.prom")

	res := c.ok("launch", agent, "-f", m, "--detach",
		"--timings", T, "--trace", R, "--gantt", G, "--metrics-file", P,
		"--push-gateway", gw.URL, "--progress", "plain")

	slug := strings.TrimSpace(res.stdout)
	require.Regexp(t, `^`+agent+`-[a-z2-7]{5}$`, slug, "stdout is the slug alone")
	assert.Equal(t, slug+"\n", res.stdout)

	tm := validTimings(t, timingsSchema(t), c.read(T))
	t.Run("timings", func(t *testing.T) {
		assert.Equal(t, slug, tm.Slug)
		assert.Equal(t, agent, tm.Agent)
		assert.Equal(t, "docker", tm.Backend)
		assert.ElementsMatch(t, steps, stepIDsOf(tm), "every planned step, no other")
		for _, s := range tm.Steps {
			assert.Equal(t, "ok", s.Outcome, s.ID)
			assert.Equal(t, 1, s.Attempts, s.ID)
			assert.Positive(t, s.DurationSeconds, s.ID)
			assert.LessOrEqual(t, s.StartOffsetSeconds+s.DurationSeconds, tm.WallSeconds+1e-6, s.ID)
		}
		require.NotEmpty(t, tm.CriticalPath)
		assert.Subset(t, steps, tm.CriticalPath)
		assert.LessOrEqual(t, tm.CriticalPathSeconds, tm.WallSeconds+1e-6)
		assert.Positive(t, tm.CriticalPathSeconds)
	})

	t.Run("trace", func(t *testing.T) {
		slices := traceSlices(t, c.read(R))
		for _, s := range tm.Steps {
			got := slices[s.ID]
			require.Len(t, got, 1, "one slice per attempt of %s", s.ID)
			args, _ := got[0]["args"].(map[string]any)
			assert.Equal(t, "ok", args["outcome"], s.ID)
			// ts and dur are microseconds from the launch start.
			assert.InDelta(t, s.StartOffsetSeconds*1e6, got[0]["ts"], 1, s.ID)
			assert.InDelta(t, s.DurationSeconds*1e6, got[0]["dur"], 1, s.ID)
		}
	})

	t.Run("gantt", func(t *testing.T) {
		rows, text := ganttSteps(t, c.read(G))
		assert.ElementsMatch(t, steps, rows, "one row per step")
		for _, id := range steps {
			assert.Contains(t, text, id)
		}
		assert.Contains(t, text, slug)
	})

	t.Run("metrics file", func(t *testing.T) {
		mfs := parseExposition(t, c.read(P))
		requireFamilies(t, mfs, steps)
		durations := seriesByStep(t, mfs[metrics.StepDurationName])
		for _, s := range tm.Steps {
			h := durations[s.ID]
			require.NotNil(t, h, s.ID)
			assert.Equal(t, map[string]string{"step": s.ID, "backend": "docker", "outcome": "ok"}, labelsOf(h))
			assert.Equal(t, uint64(1), h.GetHistogram().GetSampleCount(), s.ID)
			assert.InDelta(t, s.DurationSeconds, h.GetHistogram().GetSampleSum(), 1e-6, "metric and timings agree on %s", s.ID)
		}
		attempts := seriesByStep(t, mfs[metrics.StepAttemptsName])
		retries := seriesByStep(t, mfs[metrics.StepRetriesName])
		for _, id := range steps {
			assert.Equal(t, 1.0, attempts[id].GetCounter().GetValue(), id)
			assert.Equal(t, 0.0, retries[id].GetCounter().GetValue(), id)
		}
		launches := mfs[metrics.LaunchesName].GetMetric()
		require.Len(t, launches, 1)
		assert.Equal(t, map[string]string{"backend": "docker", "outcome": "ok"}, labelsOf(launches[0]))
		assert.Equal(t, 1.0, launches[0].GetCounter().GetValue())
		wall := mfs[metrics.LaunchDurationName].GetMetric()
		require.Len(t, wall, 1)
		assert.InDelta(t, tm.WallSeconds, wall[0].GetHistogram().GetSampleSum(), 1e-6)
		cp := mfs[metrics.LaunchCriticalPathName].GetMetric()
		require.Len(t, cp, 1)
		assert.InDelta(t, tm.CriticalPathSeconds, cp[0].GetHistogram().GetSampleSum(), 1e-6)
	})

	t.Run("push", func(t *testing.T) {
		pushes := gw.all()
		require.Len(t, pushes, 1)
		p := pushes[0]
		assert.Equal(t, http.MethodPut, p.method, "a push replaces the group")
		// client_golang keeps grouping labels in a map, so their order in
		// the path varies; the gateway reads them as a set.
		assert.Equal(t, map[string]string{"job": "bot_bottle", "agent": agent, "backend": "docker"}, pushGroup(t, p.path))
		assert.Contains(t, p.contentType, "text/plain")
		mfs := parseExposition(t, p.body)
		requireFamilies(t, mfs, steps)
		// The gateway adds the grouping labels back; a series that carried
		// them would be refused.
		for name, mf := range mfs {
			for _, m := range mf.GetMetric() {
				l := labelsOf(m)
				assert.NotContains(t, l, "backend", name)
				assert.NotContains(t, l, "agent", name)
			}
		}
		assert.Equal(t, 1.0, mfs[metrics.LaunchesName].GetMetric()[0].GetCounter().GetValue())
	})

	t.Run("plain progress on stderr", func(t *testing.T) {
		events := map[string][]progressEvent{}
		var other []string
		for _, line := range strings.Split(strings.TrimRight(res.stderr, "\n"), "\n") {
			mm := plainLine.FindStringSubmatch(line)
			if mm == nil {
				other = append(other, line)
				continue
			}
			off, err := strconv.ParseFloat(mm[2], 64)
			require.NoError(t, err)
			events[mm[3]] = append(events[mm[3]], progressEvent{off, mm[3], mm[4]})
		}
		// Besides one line per event, only the slug and the summary.
		require.Len(t, other, 2, "unexpected lines on stderr:\n%s", res.stderr)
		assert.Equal(t, "launching "+slug+" ("+agent+" on docker)", other[0])
		assert.Regexp(t, `^ready in \S+ \(critical path \S+\)$`, other[1])
		assert.ElementsMatch(t, steps, keys(events), "stderr:\n%s", res.stderr)
		for _, s := range tm.Steps {
			ev := events[s.ID]
			require.Len(t, ev, 2, "%s: started and succeeded", s.ID)
			assert.Equal(t, "started (attempt 1)", ev[0].what, s.ID)
			assert.Regexp(t, `^succeeded in \S+$`, ev[1].what, s.ID)
			// The offsets printed are the timings file's, to the millisecond.
			assert.InDelta(t, s.StartOffsetSeconds, ev[0].offset, 0.0011, s.ID)
			assert.InDelta(t, s.StartOffsetSeconds+s.DurationSeconds, ev[1].offset, 0.0011, s.ID)
		}
	})

	t.Run("ls --json", func(t *testing.T) {
		var all []struct {
			Slug, Agent, Backend, State string
			Resources                   []backends.Resource
		}
		require.NoError(t, json.Unmarshal([]byte(c.ok("ls", "--json").stdout), &all))
		i := slices.IndexFunc(all, func(b struct {
			Slug, Agent, Backend, State string
			Resources                   []backends.Resource
		}) bool {
			return b.Slug == slug
		})
		require.GreaterOrEqual(t, i, 0, "%s not listed", slug)
		b := all[i]
		assert.Equal(t, agent, b.Agent)
		assert.Equal(t, "docker", b.Backend)
		assert.Equal(t, "ready", b.State)
		// Agent, egress and supervise containers; bundle and outside
		// networks.
		assert.Len(t, b.Resources, 5)
	})

	t.Run("exec passes the exit status through", func(t *testing.T) {
		r := c.run("exec", slug, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
		assert.Equal(t, 7, r.code)
		assert.Equal(t, "out\n", r.stdout)
		assert.Equal(t, "err\n", r.stderr, "the command's status is not reported as an error")
		assert.Equal(t, "node\n", c.ok("exec", slug, "--", "id", "-un").stdout)
		assert.Equal(t, "root\n", c.ok("exec", "--root", slug, "--", "id", "-un").stdout)
		assert.Equal(t, 0, c.run("exec", slug, "--", "true").code)
	})

	rm := c.ok("rm", slug)
	assert.Equal(t, slug+"\n", rm.stdout)
	c.requireNothingLeft(backends.Labels{backends.LabelSlug: slug})
	assert.Empty(t, c.stateDirs())

	again := c.run("rm", slug)
	assert.Equal(t, 1, again.code)
	assert.Contains(t, again.stderr, slug+": already gone")
}

func TestBenchReportsAndCleansUp(t *testing.T) {
	c := newDockerCLI(t, "BOTTLE_TEST_TOKEN=tok-91b2c3d4e5")
	agent := uniqueAgent("bench")
	c.removeAgentAtEnd(agent)
	m := c.write("bottle.yaml", representativeManifest(agent))
	steps := c.planSteps(agent, m)
	T, R, G, P := c.path("timings.json"), c.path("trace.json"), c.path("median.svg"), c.path("bench.prom")

	res := c.ok("bench", agent, "-f", m, "-n", "3", "--parallel", "2", "--json",
		"--metrics-file", P, "--timings", T, "--trace", R, "--gantt", G)

	var rep metrics.BenchReport
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &rep), "stdout is the JSON report:\n%s", res.stdout)
	t.Run("report", func(t *testing.T) {
		assert.Equal(t, 3, rep.Cycles)
		assert.Equal(t, 0, rep.Failed)
		assert.Empty(t, rep.Errors)
		var ids []string
		for _, s := range rep.Steps {
			ids = append(ids, s.ID)
			assert.Equal(t, 3, s.Samples, s.ID)
			assert.Equal(t, 0, s.Retries, s.ID)
			assert.Positive(t, s.P50, s.ID)
			assert.LessOrEqual(t, s.P50, s.P95, s.ID)
			assert.LessOrEqual(t, s.P95, s.Max, s.ID)
		}
		assert.ElementsMatch(t, steps, ids)
		for name, st := range map[string]metrics.BenchStats{"wall": rep.Wall, "critical path": rep.CriticalPath, "step sum": rep.StepSum} {
			assert.Positive(t, st.P50, name)
			assert.LessOrEqual(t, st.P50, st.P95, name)
			assert.LessOrEqual(t, st.P95, st.Max, name)
		}
		// The critical path bounds each cycle's wall time from below, so
		// its order statistics do too.
		assert.LessOrEqual(t, rep.CriticalPath.P50, rep.Wall.P50+1e-9)
		assert.LessOrEqual(t, rep.CriticalPath.Max, rep.Wall.Max+1e-9)
		assert.Greater(t, rep.CriticalPathShare, 0.0)
		assert.LessOrEqual(t, rep.CriticalPathShare, 1.0+1e-9)
		// Steps overlap, so the sum of steps exceeds the wall time.
		assert.Greater(t, rep.Speedup, 1.0)
	})

	var cycles []metrics.Timings
	t.Run("timings", func(t *testing.T) {
		var raw []json.RawMessage
		require.NoError(t, json.Unmarshal(c.read(T), &raw), "--timings holds a JSON array")
		require.Len(t, raw, 3)
		sch := timingsSchema(t)
		slugs := map[string]bool{}
		for _, r := range raw {
			tm := validTimings(t, sch, r)
			cycles = append(cycles, tm)
			slugs[tm.Slug] = true
			assert.Equal(t, agent, tm.Agent)
			assert.ElementsMatch(t, steps, stepIDsOf(tm))
			for _, s := range tm.Steps {
				assert.Equal(t, "ok", s.Outcome, s.ID)
			}
		}
		assert.Len(t, slugs, 3, "every cycle is its own bottle")
	})

	t.Run("metrics agree with the timings", func(t *testing.T) {
		require.Len(t, cycles, 3)
		mfs := parseExposition(t, c.read(P))
		requireFamilies(t, mfs, steps)
		launches := mfs[metrics.LaunchesName].GetMetric()
		require.Len(t, launches, 1)
		assert.Equal(t, "ok", labelsOf(launches[0])["outcome"])
		assert.Equal(t, 3.0, launches[0].GetCounter().GetValue())
		// Cycles ran two at a time into one recorder: each step's summed
		// duration must still be exactly what the three timings say.
		want := map[string]float64{}
		for _, tm := range cycles {
			for _, s := range tm.Steps {
				want[s.ID] += s.DurationSeconds
			}
		}
		for id, h := range seriesByStep(t, mfs[metrics.StepDurationName]) {
			assert.Equal(t, uint64(3), h.GetHistogram().GetSampleCount(), id)
			assert.InDelta(t, want[id], h.GetHistogram().GetSampleSum(), 1e-6, id)
		}
		var wallSum float64
		for _, tm := range cycles {
			wallSum += tm.WallSeconds
		}
		wall := mfs[metrics.LaunchDurationName].GetMetric()
		require.Len(t, wall, 1)
		assert.InDelta(t, wallSum, wall[0].GetHistogram().GetSampleSum(), 1e-6)
	})

	t.Run("trace and gantt of the median cycle", func(t *testing.T) {
		walls := []float64{}
		for _, tm := range cycles {
			walls = append(walls, tm.WallSeconds)
		}
		sort.Float64s(walls)
		slices := traceSlices(t, c.read(R))
		var end float64
		for _, id := range steps {
			require.NotEmpty(t, slices[id], id)
			for _, s := range slices[id] {
				end = math.Max(end, (s["ts"].(float64)+s["dur"].(float64))/1e6)
			}
		}
		if len(walls) == 3 {
			assert.InDelta(t, walls[1], end, 0.01, "the trace is the median cycle's")
		}
		rows, _ := ganttSteps(t, c.read(G))
		assert.ElementsMatch(t, steps, rows)
	})

	// Every cycle was torn down: nothing carries the agent's label, and no
	// state dir remains.
	c.requireNothingLeft(backends.Labels{backends.LabelAgent: agent})
	assert.Empty(t, c.stateDirs())
	assert.Equal(t, 3, strings.Count(res.stderr, "ready in"), res.stderr)
}

// pushGroup decodes a Pushgateway path /metrics/job/J/L1/V1/... into its
// grouping labels.
func pushGroup(t *testing.T, path string) map[string]string {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(path, "/metrics/"), "/")
	require.Zero(t, len(parts)%2, "path %s has an odd number of label segments", path)
	out := map[string]string{}
	for i := 0; i < len(parts); i += 2 {
		out[parts[i]] = parts[i+1]
	}
	return out
}
