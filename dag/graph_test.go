package dag_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
)

func step(id string, deps ...string) *dagtest.FakeStep {
	return &dagtest.FakeStep{Name: id, DependsOn: deps}
}

func TestNewRejectsInvalidGraphs(t *testing.T) {
	tests := []struct {
		name      string
		steps     []dag.Step
		kind      dag.GraphErrorKind
		steps_    []string
		inMessage []string
	}{
		{
			name:      "three-step cycle",
			steps:     asSteps(step("a", "c"), step("b", "a"), step("c", "b")),
			kind:      dag.GraphErrCycle,
			steps_:    []string{"b", "c", "a"},
			inMessage: []string{`dependency cycle "b" -> "c" -> "a" -> "b"`},
		},
		{
			name: "cycle behind ordinary steps names only the cycle",
			steps: asSteps(step("root"), step("behind", "root", "x"), step("x", "root", "z"),
				step("y", "x"), step("z", "y"), step("leaf", "root")),
			kind:      dag.GraphErrCycle,
			steps_:    []string{"y", "z", "x"},
			inMessage: []string{`"y" -> "z" -> "x" -> "y"`},
		},
		{
			name:      "self dependency",
			steps:     asSteps(step("a"), step("loop", "a", "loop")),
			kind:      dag.GraphErrCycle,
			steps_:    []string{"loop"},
			inMessage: []string{`"loop" -> "loop"`},
		},
		{
			name:      "duplicate id",
			steps:     asSteps(step("net"), step("boot", "net"), step("net")),
			kind:      dag.GraphErrDuplicateID,
			steps_:    []string{"net"},
			inMessage: []string{`step ID "net" is used by more than one step`},
		},
		{
			name:      "unknown dependency",
			steps:     asSteps(step("net"), step("boot", "net", "volume")),
			kind:      dag.GraphErrUnknownDependency,
			steps_:    []string{"boot", "volume"},
			inMessage: []string{`step "boot" depends on "volume", which is not a step`},
		},
		{
			name:      "empty id",
			steps:     asSteps(step("net"), step("", "net")),
			kind:      dag.GraphErrEmptyID,
			inMessage: []string{"step #1 has an empty ID"},
		},
		{
			name:      "nil step",
			steps:     []dag.Step{step("net"), nil},
			kind:      dag.GraphErrNilStep,
			inMessage: []string{"step #1 is nil"},
		},
		{
			name:      "dependency listed twice",
			steps:     asSteps(step("net"), step("boot", "net", "net")),
			kind:      dag.GraphErrDuplicateDependency,
			steps_:    []string{"boot", "net"},
			inMessage: []string{`step "boot" lists dependency "net" more than once`},
		},
		{
			name:      "id with a quote",
			steps:     asSteps(step(`bad"id`)),
			kind:      dag.GraphErrInvalidID,
			steps_:    []string{`bad"id`},
			inMessage: []string{"quote"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := dag.New(tt.steps...)
			require.Error(t, err)
			assert.Nil(t, g)
			var gerr *dag.GraphError
			require.ErrorAs(t, err, &gerr)
			assert.Equal(t, tt.kind, gerr.Kind)
			assert.Equal(t, tt.steps_, gerr.Steps)
			for _, want := range tt.inMessage {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestNewRejectsBeforeAnythingRuns(t *testing.T) {
	a := step("a", "b")
	b := step("b", "a")
	_, err := dag.New(a, b)
	require.Error(t, err)
	assert.Zero(t, a.Attempts()+b.Attempts())
}

func TestStepsAreInDeterministicTopologicalOrder(t *testing.T) {
	g := mustGraph(t, step("d", "b", "c"), step("b", "a"), step("c", "a"), step("a"), step("e"))
	var ids []string
	for _, s := range g.Steps() {
		ids = append(ids, s.ID())
	}
	// Among ready steps the earliest declared goes first.
	assert.Equal(t, []string{"a", "b", "c", "d", "e"}, ids)
	assert.Equal(t, 5, g.Len())

	s, ok := g.Step("c")
	require.True(t, ok)
	assert.Equal(t, "c", s.ID())
	_, ok = g.Step("nope")
	assert.False(t, ok)
}

func TestStepsOrderHoldsOnRandomGraphs(t *testing.T) {
	for seed := range uint64(50) {
		deps := randomDeps(seed, 60, 4)
		steps := fakeSteps(deps, nil)
		// Declare in reverse so New has to reorder.
		reversed := make([]dag.Step, len(steps))
		for i, s := range steps {
			reversed[len(steps)-1-i] = s
		}
		g := mustGraph(t, reversed...)
		pos := map[string]int{}
		for i, s := range g.Steps() {
			pos[s.ID()] = i
		}
		require.Len(t, pos, len(steps))
		for i, ds := range deps {
			for _, d := range ds {
				require.Less(t, pos[d], pos[stepName(i)], "seed %d: %s must follow its dependency %s", seed, stepName(i), d)
			}
		}
	}
}

func TestNewBuildsLargeGraphQuickly(t *testing.T) {
	steps := fakeSteps(randomDeps(1, 10000, 4), nil)
	start := time.Now()
	g := mustGraph(t, asSteps(steps...)...)
	assert.Equal(t, 10000, g.Len())
	// Generous for -race on a busy machine; a quadratic build takes minutes.
	assert.Less(t, time.Since(start), 20*time.Second)
}

func TestDOTHasEveryNodeAndEdge(t *testing.T) {
	g := mustGraph(t, step("network"), step("egress", "network"), step("git_gate", "network"),
		step("agent", "egress", "git_gate"), step("lonely"))
	var buf bytes.Buffer
	require.NoError(t, g.DOT(&buf))
	dot := buf.String()

	assert.Contains(t, dot, "digraph")
	for _, id := range []string{"network", "egress", "git_gate", "agent", "lonely"} {
		assert.Contains(t, dot, fmt.Sprintf("%q [", id), "node %s", id)
	}
	edges := [][2]string{{"network", "egress"}, {"network", "git_gate"}, {"egress", "agent"}, {"git_gate", "agent"}}
	for _, e := range edges {
		assert.Contains(t, dot, fmt.Sprintf("%q -> %q", e[0], e[1]))
	}
	assert.Equal(t, len(edges), strings.Count(dot, "->"), "no edge beyond the dependencies")

	// Statements are sorted, so the output is stable across renders.
	for range 5 {
		var again bytes.Buffer
		require.NoError(t, g.DOT(&again))
		require.Equal(t, dot, again.String())
	}
	assert.Less(t, strings.Index(dot, `"network" [`), strings.Index(dot, `"agent" [`))
}

func TestCriticalPathOnHandComputedGraph(t *testing.T) {
	//   a(3) -> b(2) -> d(4) -> f(1)
	//   a    -> c(5) -> d
	//   e(1) ---------> d
	//   g(10), alone
	// Chains ending in f: a-c-d-f = 13, a-b-d-f = 10, e-d-f = 6; g = 10.
	g := mustGraph(t, step("a"), step("b", "a"), step("c", "a"), step("e"),
		step("d", "b", "c", "e"), step("f", "d"), step("g"))
	ms := time.Millisecond
	durations := map[string]time.Duration{"a": 3 * ms, "b": 2 * ms, "c": 5 * ms, "d": 4 * ms, "e": 1 * ms, "f": 1 * ms, "g": 10 * ms}

	path, total := dag.CriticalPath(g, durations)
	assert.Equal(t, []string{"a", "c", "d", "f"}, path)
	assert.Equal(t, 13*ms, total)

	// Make the other branch longer.
	durations["b"] = 7 * ms
	path, total = dag.CriticalPath(g, durations)
	assert.Equal(t, []string{"a", "b", "d", "f"}, path)
	assert.Equal(t, 15*ms, total)

	// Only steps that ran count: without a, b and c, the chain through d
	// starts at e, and g (10) beats e-d-f (6).
	path, total = dag.CriticalPath(g, map[string]time.Duration{"d": 4 * ms, "e": 1 * ms, "f": 1 * ms, "g": 10 * ms})
	assert.Equal(t, []string{"g"}, path)
	assert.Equal(t, 10*ms, total)

	path, total = dag.CriticalPath(g, nil)
	assert.Nil(t, path)
	assert.Zero(t, total)
}
