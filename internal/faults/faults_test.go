package faults_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
	"github.com/bot-bottle/bot-bottle/internal/faults"
)

// retryAll retries every error, so a fault can be placed on a later
// attempt.
func retryAll(n int) *dag.RetryPolicy {
	return &dag.RetryPolicy{MaxAttempts: n, Retryable: func(err error) bool { return !errors.Is(err, faults.ErrInjected) }}
}

// graph is a -> b, both undoable.
func graph(t *testing.T, b *dagtest.FakeStep) (*dag.Graph, *dagtest.FakeStep) {
	t.Helper()
	a := &dagtest.FakeStep{Name: "a"}
	g, err := dag.New(a, b)
	require.NoError(t, err)
	return g, a
}

func TestEachKindFailsTheNamedStepAndRollsBack(t *testing.T) {
	for _, kind := range []faults.Kind{faults.KindError, faults.KindPanic, faults.KindHang} {
		t.Run(string(kind), func(t *testing.T) {
			b := &dagtest.FakeStep{Name: "b", DependsOn: []string{"a"}, AttemptTimeout: time.Hour}
			g, a := graph(t, b)
			f := faults.Fault{Step: "b", Kind: kind, Duration: 50 * time.Millisecond}
			start := time.Now()
			_, err := g.Execute(context.Background(), dag.Options{Wrap: faults.Wrapper(f)})
			require.Error(t, err)
			assert.Less(t, time.Since(start), 10*time.Second, "a hang ends at the forced timeout, not the step's hour")
			var se *dag.StepError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, "b", se.Step)
			assert.ErrorIs(t, err, faults.ErrInjected)
			var fe *faults.Error
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, kind, fe.Kind)
			switch kind {
			case faults.KindPanic:
				var pe *dag.PanicError
				require.ErrorAs(t, err, &pe)
				assert.Same(t, fe, pe.Value)
			case faults.KindHang:
				var te *dag.TimeoutError
				require.ErrorAs(t, err, &te)
				assert.Equal(t, 50*time.Millisecond, te.After)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			}
			assert.Equal(t, 0, b.Attempts(), "the real step never ran")
			assert.Equal(t, 1, b.Undos(), "undo is forwarded for the failed step")
			assert.Equal(t, 1, a.Undos(), "its dependency is rolled back")
		})
	}
}

func TestFaultStrikesAtTheChosenAttempt(t *testing.T) {
	b := &dagtest.FakeStep{Name: "b", DependsOn: []string{"a"}, FailUntil: 2, Policy: retryAll(5)}
	g, _ := graph(t, b)
	res, err := g.Execute(context.Background(), dag.Options{
		Clock: dagtest.NewFakeClock(time.Now()),
		Wrap:  faults.Wrapper(faults.Fault{Step: "b", Kind: faults.KindError, Attempt: 3}),
	})
	require.Error(t, err)
	var fe *faults.Error
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, 3, fe.Attempt)
	assert.Equal(t, 2, b.Attempts(), "attempts 1 and 2 ran the real step (and failed, so were retried)")
	sr, ok := res.Step("b")
	require.True(t, ok)
	assert.Equal(t, 3, sr.Attempts)
	assert.Equal(t, dag.OutcomeFailed, sr.Outcome)
}

func TestFaultOnAnAttemptNeverReachedChangesNothing(t *testing.T) {
	// Negative control: the fault is wired, but the step succeeds at once.
	b := &dagtest.FakeStep{Name: "b", DependsOn: []string{"a"}}
	g, _ := graph(t, b)
	_, err := g.Execute(context.Background(), dag.Options{Wrap: faults.Wrapper(faults.Fault{Step: "b", Kind: faults.KindPanic, Attempt: 2})})
	require.NoError(t, err)
	assert.Equal(t, 1, b.Attempts())
}

func TestSlowDelaysThenRunsTheStep(t *testing.T) {
	b := &dagtest.FakeStep{Name: "b", DependsOn: []string{"a"}, AttemptTimeout: time.Minute}
	g, _ := graph(t, b)
	f := faults.Fault{Step: "b", Kind: faults.KindSlow, Duration: 200 * time.Millisecond}
	w := f.Wrap(b)
	assert.Equal(t, time.Minute+200*time.Millisecond, w.(dag.Timeouter).Timeout(), "the delay does not eat the step's own bound")
	start := time.Now()
	_, err := g.Execute(context.Background(), dag.Options{Wrap: faults.Wrapper(f)})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
	assert.Equal(t, 1, b.Attempts())
}

func TestWrapperForwardsOptionalAbilities(t *testing.T) {
	policy := retryAll(4)
	b := &dagtest.FakeStep{Name: "b", Policy: policy, AttemptTimeout: 7 * time.Second}
	w := faults.Fault{Step: "b", Kind: faults.KindError}.Wrap(b)
	assert.Equal(t, "b", w.ID())
	assert.Same(t, policy, w.(dag.Retrier).RetryPolicy())
	assert.Equal(t, 7*time.Second, w.(dag.Timeouter).Timeout())
	require.NoError(t, w.(dag.Undoer).Undo(context.Background()))
	assert.Equal(t, 1, b.Undos())

	hang := faults.Fault{Step: "b", Kind: faults.KindHang}.Wrap(b)
	assert.Equal(t, faults.DefaultHangTimeout, hang.(dag.Timeouter).Timeout())
	// A step without the optional interfaces stays without their effect.
	plain := faults.Fault{Step: "p", Kind: faults.KindError}.Wrap(dagtest.Plain(&dagtest.FakeStep{Name: "p"}))
	assert.Nil(t, plain.(dag.Retrier).RetryPolicy())
	assert.Zero(t, plain.(dag.Timeouter).Timeout())
	require.NoError(t, plain.(dag.Undoer).Undo(context.Background()))
	// Other steps are returned as they are.
	other := &dagtest.FakeStep{Name: "other"}
	assert.Same(t, dag.Step(other), faults.Fault{Step: "b", Kind: faults.KindError}.Wrap(other))
}

func TestParse(t *testing.T) {
	cases := map[string][]faults.Fault{
		"boot:error":                  {{Step: "boot", Kind: faults.KindError}},
		"sidecar:egress:panic":        {{Step: "sidecar:egress", Kind: faults.KindPanic}},
		"sidecar:git-gate:hang=2s:3":  {{Step: "sidecar:git-gate", Kind: faults.KindHang, Duration: 2 * time.Second, Attempt: 3}},
		"ca:slow=500ms, prompt:error": {{Step: "ca", Kind: faults.KindSlow, Duration: 500 * time.Millisecond}, {Step: "prompt", Kind: faults.KindError}},
		"git_user:hang:2":             {{Step: "git_user", Kind: faults.KindHang, Attempt: 2}},
	}
	for spec, want := range cases {
		got, err := faults.Parse(spec)
		require.NoError(t, err, spec)
		assert.Equal(t, want, got, spec)
		for _, f := range got {
			back, err := faults.Parse(f.String())
			require.NoError(t, err)
			assert.Equal(t, []faults.Fault{f}, back, "String round-trips")
		}
	}
	for _, bad := range []string{"", "boot", "boot:explode", ":error", "boot:error:0", "boot:error=1s", "boot:hang=soon", "boot:hang=-1s", "error:2"} {
		_, err := faults.Parse(bad)
		assert.Error(t, err, bad)
	}
}
