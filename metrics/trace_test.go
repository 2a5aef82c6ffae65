package metrics

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
)

type decodedTrace struct {
	TraceEvents []struct {
		Name  string         `json:"name"`
		Ph    string         `json:"ph"`
		Ts    float64        `json:"ts"`
		Dur   float64        `json:"dur"`
		Pid   int            `json:"pid"`
		Tid   int            `json:"tid"`
		Cname string         `json:"cname"`
		Args  map[string]any `json:"args"`
	} `json:"traceEvents"`
	DisplayTimeUnit string         `json:"displayTimeUnit"`
	OtherData       map[string]any `json:"otherData"`
}

func writeTrace(t *testing.T, res *dag.Result) decodedTrace {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteTrace(&buf, res, "bottle-7f3a"))
	var tr decodedTrace
	require.NoError(t, json.Unmarshal(buf.Bytes(), &tr), buf.String())
	return tr
}

// assertLanesDisjoint checks that no two complete events on one thread
// overlap, and that every thread used is named.
func assertLanesDisjoint(t *testing.T, tr decodedTrace) {
	t.Helper()
	type iv struct {
		name       string
		start, end float64
	}
	lanes := map[int][]iv{}
	named := map[int]bool{}
	for _, e := range tr.TraceEvents {
		switch e.Ph {
		case "X":
			lanes[e.Tid] = append(lanes[e.Tid], iv{e.Name, e.Ts, e.Ts + e.Dur})
		case "M":
			if e.Name == "thread_name" {
				named[e.Tid] = true
				assert.NotEmpty(t, e.Args["name"])
			}
		}
	}
	for tid, ivs := range lanes {
		assert.True(t, named[tid], "lane %d has no thread_name", tid)
		for i := range ivs {
			for j := i + 1; j < len(ivs); j++ {
				a, b := ivs[i], ivs[j]
				assert.False(t, a.start < b.end && b.start < a.end,
					"lane %d: %s [%g,%g) overlaps %s [%g,%g)", tid, a.name, a.start, a.end, b.name, b.start, b.end)
			}
		}
	}
}

func TestTraceHasOneSlicePerAttempt(t *testing.T) {
	tr := writeTrace(t, launchOK())
	assert.Equal(t, "ms", tr.DisplayTimeUnit)

	attempts := map[string]int{}
	lanesOf := map[string]map[int]bool{}
	for _, e := range tr.TraceEvents {
		if e.Ph != "X" {
			continue
		}
		attempts[e.Name]++
		if lanesOf[e.Name] == nil {
			lanesOf[e.Name] = map[int]bool{}
		}
		lanesOf[e.Name][e.Tid] = true
		assert.Equal(t, 1, e.Pid)
	}
	for _, s := range launchOK().Steps {
		assert.Equal(t, s.Attempts, attempts[s.ID], s.ID)
		assert.Len(t, lanesOf[s.ID], 1, "%s: all attempts of a step share one lane", s.ID)
	}

	var gate []int
	for i, e := range tr.TraceEvents {
		if e.Name == "sidecar:git-gate" && e.Ph == "X" {
			gate = append(gate, i)
		}
	}
	require.Len(t, gate, 2)
	first, second := tr.TraceEvents[gate[0]], tr.TraceEvents[gate[1]]
	// Microseconds from the launch start.
	assert.Equal(t, 100_000.0, first.Ts)
	assert.Equal(t, 200_000.0, first.Dur)
	assert.Equal(t, 400_000.0, second.Ts)
	assert.Equal(t, 300_000.0, second.Dur)
	assert.Equal(t, "failed", first.Args["outcome"])
	assert.Equal(t, "dial git-gate: connection refused", first.Args["error"])
	assert.Equal(t, 1.0, first.Args["attempt"])
	assert.Equal(t, "ok", second.Args["outcome"])
	assert.Equal(t, 2.0, second.Args["attempt"])
	assert.NotContains(t, second.Args, "error")
	assert.NotEqual(t, first.Cname, second.Cname, "a failed attempt looks different")
	assert.Equal(t, true, second.Args["critical"])

	assertLanesDisjoint(t, tr)
	// image, network, egress/git-gate and the three post-boot steps need
	// at most three lanes at once; greedy assignment finds exactly that.
	lanes := map[int]bool{}
	for _, e := range tr.TraceEvents {
		if e.Ph == "X" {
			lanes[e.Tid] = true
		}
	}
	assert.Len(t, lanes, 3)

	assert.Equal(t, []any{"network", "sidecar:git-gate", "boot", "workspace"}, tr.OtherData["critical_path"])
}

func TestTraceShowsUndoAndFailures(t *testing.T) {
	tr := writeTrace(t, launchFailed())
	names := map[string]int{}
	var undoImage, egressLast map[string]any
	var undoCname string
	for _, e := range tr.TraceEvents {
		if e.Ph != "X" {
			continue
		}
		names[e.Name]++
		if e.Name == "undo image" {
			undoImage, undoCname = e.Args, e.Cname
			assert.Equal(t, 900_000.0, e.Ts)
			assert.Equal(t, 100_000.0, e.Dur)
		}
		if e.Name == "sidecar:egress" && e.Args["attempt"] == 3.0 {
			egressLast = e.Args
		}
	}
	assert.Equal(t, 1, names["undo image"])
	assert.Equal(t, 1, names["undo network"])
	assert.Equal(t, 3, names["sidecar:egress"])
	assert.Equal(t, 1, names[evilID], "ids are escaped by JSON, not mangled")
	assert.Zero(t, names["boot"], "a skipped step ran no attempt")
	assert.Equal(t, []any{"boot"}, tr.OtherData["skipped"])

	require.NotNil(t, undoImage)
	assert.Equal(t, "remove image: in use", undoImage["error"])
	assert.Equal(t, cnameUndoBad, undoCname)
	require.NotNil(t, egressLast)
	assert.Equal(t, "failed", egressLast["outcome"])
	assert.Equal(t, "failed", egressLast["step_outcome"])

	for _, e := range tr.TraceEvents {
		if e.Name == "sidecar:git-gate" {
			assert.Equal(t, "cancelled", e.Args["outcome"])
			assert.Equal(t, cnameCancelled, e.Cname)
		}
	}
	assertLanesDisjoint(t, tr)
}

func TestTraceLanesUnderHeavyOverlap(t *testing.T) {
	// Ten steps all running at once, then ten more one after another:
	// ten lanes are needed, and reused afterwards.
	res := &dag.Result{Wall: ms(300)}
	for i := range 10 {
		res.Steps = append(res.Steps, dag.StepResult{
			ID: string(rune('a' + i)), Start: ms(i), Duration: ms(100), Attempts: 1, Outcome: dag.OutcomeOK,
			AttemptSpans: []dag.Span{{Start: ms(i), Duration: ms(100)}},
		})
	}
	for i := range 10 {
		res.Steps = append(res.Steps, dag.StepResult{
			ID: string(rune('A' + i)), Start: ms(110 + 10*i), Duration: ms(10), Attempts: 1, Outcome: dag.OutcomeOK,
			AttemptSpans: []dag.Span{{Start: ms(110 + 10*i), Duration: ms(10)}},
		})
	}
	tr := writeTrace(t, res)
	assertLanesDisjoint(t, tr)
	threads := 0
	for _, e := range tr.TraceEvents {
		if e.Ph == "M" && e.Name == "thread_name" {
			threads++
		}
	}
	assert.Equal(t, 10, threads)
}
