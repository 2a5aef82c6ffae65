package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
)

func durations(msList ...int) []time.Duration {
	out := make([]time.Duration, len(msList))
	for i, m := range msList {
		out[i] = ms(m)
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	ten := durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	assert.Equal(t, ms(5), Percentile(ten, 50))   // ceil(5.0) = 5th
	assert.Equal(t, ms(10), Percentile(ten, 95))  // ceil(9.5) = 10th
	assert.Equal(t, ms(9), Percentile(ten, 90))   // ceil(9.0) = 9th
	assert.Equal(t, ms(10), Percentile(ten, 100)) // the maximum
	assert.Equal(t, ms(1), Percentile(ten, 1))    // ceil(0.1) = 1st

	twenty := durations(10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200)
	assert.Equal(t, ms(190), Percentile(twenty, 95)) // ceil(19.0) = 19th
	assert.Equal(t, ms(100), Percentile(twenty, 50))

	four := durations(15, 20, 35, 40)
	assert.Equal(t, ms(20), Percentile(four, 50)) // ceil(2.0) = 2nd, no interpolation
	assert.Equal(t, ms(40), Percentile(four, 95))

	assert.Equal(t, ms(7), Percentile(durations(7), 50))
	assert.Equal(t, ms(7), Percentile(durations(7), 95))
	assert.Zero(t, Percentile(nil, 50))
	assert.Equal(t, ms(1), Percentile(ten, 0), "p0 is clamped to the first rank")
}

// cycle builds a successful result: steps a (no deps) and b (after a) plus
// c in parallel with both.
func cycle(wall, a, b, c int, bAttempts int) *dag.Result {
	step := func(id string, deps []string, start, dur, attempts int) dag.StepResult {
		return dag.StepResult{ID: id, Deps: deps, Start: ms(start), Duration: ms(dur), Attempts: attempts, Outcome: dag.OutcomeOK}
	}
	return &dag.Result{
		Wall: ms(wall),
		Steps: []dag.StepResult{
			step("a", nil, 0, a, 1),
			step("c", nil, 0, c, 1),
			step("b", []string{"a"}, a, b, bAttempts),
		},
		CriticalPath:         []string{"a", "b"},
		CriticalPathDuration: ms(a + b),
	}
}

func TestNewBenchReport(t *testing.T) {
	results := []*dag.Result{
		cycle(1000, 400, 500, 800, 1), // sum 1700, cp 900
		cycle(2000, 800, 1000, 1600, 2),
		cycle(500, 200, 250, 400, 1),
		cycle(4000, 1600, 2000, 3200, 3),
	}
	failures := []error{
		errors.New("sidecar:egress: exit status 1"),
		errors.New("boot: timeout"),
		errors.New("sidecar:egress: exit status 1"),
	}
	r := NewBenchReport(results, failures)

	assert.Equal(t, 4, r.Cycles)
	assert.Equal(t, 3, r.Failed)
	assert.Equal(t, []BenchError{
		{Message: "sidecar:egress: exit status 1", Count: 2},
		{Message: "boot: timeout", Count: 1},
	}, r.Errors)

	// Walls sorted: 0.5, 1, 2, 4 s. p50 = 2nd, p95 = ceil(3.8) = 4th.
	assert.Equal(t, BenchStats{P50: 1, P95: 4, Max: 4}, r.Wall)
	assert.Equal(t, BenchStats{P50: 0.9, P95: 3.6, Max: 3.6}, r.CriticalPath)
	assert.Equal(t, BenchStats{P50: 1.7, P95: 6.8, Max: 6.8}, r.StepSum)
	// Every cycle has cp/wall = 0.9 and sum/wall = 1.7.
	assert.InDelta(t, 0.9, r.CriticalPathShare, 1e-9)
	assert.InDelta(t, 1.7, r.Speedup, 1e-9)

	require.Len(t, r.Steps, 3)
	assert.Equal(t, []string{"a", "c", "b"}, []string{r.Steps[0].ID, r.Steps[1].ID, r.Steps[2].ID}, "first-start order")
	b := r.Steps[2]
	assert.Equal(t, 4, b.Samples)
	assert.Equal(t, 3, b.Retries, "1 + 2 extra attempts")
	assert.Equal(t, BenchStats{P50: 0.5, P95: 2, Max: 2}, b.BenchStats)
}

func TestBenchReportMeansDifferingRatios(t *testing.T) {
	// cp/wall: 0.5 and 1.0 → mean 0.75; sum/wall: 3.0 and 1.0 → mean 2.
	one := &dag.Result{Wall: ms(1000), CriticalPathDuration: ms(500), Steps: []dag.StepResult{
		{ID: "x", Duration: ms(1500), Attempts: 1, Outcome: dag.OutcomeOK},
		{ID: "y", Duration: ms(1500), Attempts: 1, Outcome: dag.OutcomeOK},
	}}
	two := &dag.Result{Wall: ms(2000), CriticalPathDuration: ms(2000), Steps: []dag.StepResult{
		{ID: "x", Duration: ms(2000), Attempts: 1, Outcome: dag.OutcomeOK},
		// A non-ok step counts toward the sum but not toward its own
		// statistics.
		{ID: "z", Duration: 0, Attempts: 0, Outcome: dag.OutcomeSkipped},
	}}
	r := NewBenchReport([]*dag.Result{one, nil, two}, nil)
	assert.Equal(t, 2, r.Cycles, "nil results are ignored")
	assert.InDelta(t, 0.75, r.CriticalPathShare, 1e-9)
	assert.InDelta(t, 2.0, r.Speedup, 1e-9)
	var ids []string
	for _, s := range r.Steps {
		ids = append(ids, s.ID)
	}
	assert.Equal(t, []string{"x", "y"}, ids)
	assert.Empty(t, r.Errors)
}

func TestBenchReportOfNothing(t *testing.T) {
	r := NewBenchReport(nil, []error{errors.New("docker not running")})
	assert.Zero(t, r.Cycles)
	assert.Equal(t, 1, r.Failed)
	assert.Zero(t, r.Speedup)
	var buf bytes.Buffer
	require.NoError(t, r.WriteText(&buf))
	assert.Contains(t, buf.String(), "0 cycles ok, 1 failed")
	assert.Contains(t, buf.String(), "1× docker not running")

	data, err := json.Marshal(r)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"steps":[]`, "empty lists are [] for JSON consumers")
}

func TestBenchReportJSON(t *testing.T) {
	r := NewBenchReport([]*dag.Result{cycle(1000, 400, 500, 800, 1)}, []error{errors.New("boom")})
	data, err := json.Marshal(r)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	for _, key := range []string{"cycles", "failed", "errors", "wall", "critical_path", "step_sum", "critical_path_share_mean", "speedup_mean", "steps"} {
		assert.Contains(t, m, key)
	}
	steps := m["steps"].([]any)
	first := steps[0].(map[string]any)
	assert.Equal(t, "a", first["id"])
	assert.Equal(t, 0.4, first["p50_seconds"], "stats are inlined in each step")
	assert.Equal(t, 0.4, first["max_seconds"])
	assert.Equal(t, 1.0, m["wall"].(map[string]any)["p95_seconds"])

	var back BenchReport
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, r, back)
}

func TestBenchReportText(t *testing.T) {
	results := []*dag.Result{cycle(1000, 400, 500, 800, 1), cycle(2000, 800, 1000, 1600, 2)}
	// A long step id widens the name column without breaking alignment.
	results[0].Steps = append(results[0].Steps, dag.StepResult{ID: "sidecar:git-gate", Duration: ms(42), Attempts: 1, Outcome: dag.OutcomeOK})
	r := NewBenchReport(results, []error{errors.New("x")})
	var buf bytes.Buffer
	require.NoError(t, r.WriteText(&buf))
	out := buf.String()

	assert.Contains(t, out, "2 cycles ok, 1 failed")
	assert.Contains(t, out, "critical path share of wall (mean): 90.0%")
	// (1.742/1 + 3.4/2) / 2: the extra 42 ms step counts in the first sum.
	assert.Contains(t, out, "sum of steps / wall (mean speed-up): 1.72x")

	// In each table, every row has the same width and the numbers end in
	// the same columns.
	tables := strings.Split(out, "\n\n")
	var stepTable []string
	for _, tbl := range tables {
		if strings.HasPrefix(strings.TrimSpace(tbl), "step") {
			stepTable = strings.Split(strings.TrimRight(tbl, "\n"), "\n")
		}
	}
	require.Len(t, stepTable, 5, out)
	for _, line := range stepTable[1:] {
		assert.Equal(t, len(stepTable[0]), len(line), "aligned:\n%s", strings.Join(stepTable, "\n"))
	}
	assert.True(t, strings.HasPrefix(stepTable[4], "  sidecar:git-gate "), "names are left-aligned")
	assert.True(t, strings.HasPrefix(stepTable[1], "  a                "), "names are left-aligned")
	assert.Contains(t, stepTable[3], "0.500s  1.000s  1.000s", "b's p50, p95, max")
	assert.Contains(t, out, "1× x")
}
