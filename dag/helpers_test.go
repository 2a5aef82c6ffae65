package dag_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
)

// testTimeout bounds every wait in these tests: a scheduling bug shows up as
// a failed test, never as a hung one.
const testTimeout = 10 * time.Second

// randomDeps returns the dependency lists of a random DAG of n steps named
// s0000..: step i depends on up to maxDeps distinct steps with a smaller
// number. The same seed yields the same graph.
func randomDeps(seed uint64, n, maxDeps int) [][]string {
	rnd := rand.New(rand.NewPCG(seed, 0x5eed))
	deps := make([][]string, n)
	for i := 1; i < n; i++ {
		k := rnd.IntN(maxDeps + 1)
		seen := map[int]bool{}
		for range k {
			j := rnd.IntN(i)
			if !seen[j] {
				seen[j] = true
				deps[i] = append(deps[i], stepName(j))
			}
		}
	}
	return deps
}

func stepName(i int) string { return fmt.Sprintf("s%04d", i) }

// fakeSteps builds a FakeStep per dependency list, recording into rec.
func fakeSteps(deps [][]string, rec *dagtest.Recorder) []*dagtest.FakeStep {
	steps := make([]*dagtest.FakeStep, len(deps))
	for i, d := range deps {
		steps[i] = &dagtest.FakeStep{Name: stepName(i), DependsOn: d, Rec: rec}
	}
	return steps
}

func asSteps[S dag.Step](steps ...S) []dag.Step {
	out := make([]dag.Step, len(steps))
	for i, s := range steps {
		out[i] = s
	}
	return out
}

func mustGraph(t testing.TB, steps ...dag.Step) *dag.Graph {
	t.Helper()
	g, err := dag.New(steps...)
	require.NoError(t, err)
	return g
}

// execute runs g and fails the test if Execute does not return within
// testTimeout.
func execute(t *testing.T, ctx context.Context, g *dag.Graph, opts dag.Options) (*dag.Result, error) {
	t.Helper()
	type outcome struct {
		res *dag.Result
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		res, err := g.Execute(ctx, opts)
		ch <- outcome{res, err}
	}()
	select {
	case o := <-ch:
		require.NotNil(t, o.res, "Execute must always return a result")
		return o.res, o.err
	case <-time.After(testTimeout):
		t.Fatalf("Execute did not return within %s", testTimeout)
		return nil, nil
	}
}

// outcomes maps step ID to outcome.
func outcomes(res *dag.Result) map[string]dag.Outcome {
	m := make(map[string]dag.Outcome, len(res.Steps))
	for _, s := range res.Steps {
		m[s.ID] = s.Outcome
	}
	return m
}

// waitClosed waits for ch or ctx, failing with a message naming what it
// waited for after testTimeout; steps use it to build barriers that turn a
// sequential schedule into a test failure instead of a hang.
func waitClosed(ctx context.Context, ch <-chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(testTimeout / 2):
		return fmt.Errorf("timed out waiting for %s: the steps did not overlap", what)
	}
}

// closeOnce returns a channel and a function closing it, safe to call
// more than once.
func closeOnce() (chan struct{}, func()) {
	ch := make(chan struct{})
	return ch, sync.OnceFunc(func() { close(ch) })
}
