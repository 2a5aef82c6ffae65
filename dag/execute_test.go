package dag_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
)

func TestExecuteHonoursDependenciesOnRandomGraphs(t *testing.T) {
	parallelism := []int{0, 1, 2, 3, 8}
	for seed := range uint64(300) {
		rnd := rand.New(rand.NewPCG(seed, 7))
		n := 5 + rnd.IntN(40)
		deps := randomDeps(seed, n, 4)
		rec := &dagtest.Recorder{}
		steps := fakeSteps(deps, rec)
		for _, s := range steps {
			// Mix instant steps with short sleeps so completions interleave.
			if rnd.IntN(3) == 0 {
				s.Delay = time.Duration(rnd.IntN(300)) * time.Microsecond
			}
		}
		rnd.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })
		g := mustGraph(t, asSteps(steps...)...)
		maxParallel := parallelism[seed%uint64(len(parallelism))]

		res, err := execute(t, context.Background(), g, dag.Options{MaxParallel: maxParallel})
		require.NoError(t, err, "seed %d", seed)

		// Seq orders recorder entries totally: every step's first start must
		// come after the last finish of each of its dependencies.
		for i, ds := range deps {
			start, ok := rec.First(dagtest.KindStart, stepName(i))
			require.True(t, ok, "seed %d: %s never started", seed, stepName(i))
			for _, d := range ds {
				finish, ok := rec.Last(dagtest.KindFinish, d)
				require.True(t, ok)
				require.Greater(t, start.Seq, finish.Seq, "seed %d: %s started before its dependency %s finished", seed, stepName(i), d)
			}
		}
		if maxParallel > 0 {
			require.LessOrEqual(t, rec.MaxConcurrent(), maxParallel, "seed %d", seed)
		}
		require.Len(t, res.Steps, n)
		for _, s := range res.Steps {
			require.Equal(t, dag.OutcomeOK, s.Outcome, "seed %d step %s", seed, s.ID)
			require.Equal(t, 1, s.Attempts)
			require.Len(t, s.AttemptSpans, 1)
		}
	}
}

func TestIndependentStepsOverlap(t *testing.T) {
	aStarted, startA := closeOnce()
	bStarted, startB := closeOnce()
	// Each waits until the other has started: a sequential executor
	// deadlocks here, which waitClosed turns into a failure.
	a := &dagtest.FakeStep{Name: "a", Hook: func(ctx context.Context, _ int) error {
		startA()
		return waitClosed(ctx, bStarted, "b to start")
	}}
	b := &dagtest.FakeStep{Name: "b", Hook: func(ctx context.Context, _ int) error {
		startB()
		return waitClosed(ctx, aStarted, "a to start")
	}}
	g := mustGraph(t, a, b)
	_, err := execute(t, context.Background(), g, dag.Options{})
	require.NoError(t, err)
}

func TestDependentStartsWithoutWaitingForUnrelatedSteps(t *testing.T) {
	// slow only finishes once late has started; late depends on fast alone.
	// An executor that waits for a whole level (fast and slow) before
	// starting late deadlocks.
	lateStarted, startLate := closeOnce()
	fast := step("fast")
	slow := &dagtest.FakeStep{Name: "slow", Hook: func(ctx context.Context, _ int) error {
		return waitClosed(ctx, lateStarted, "late to start")
	}}
	late := &dagtest.FakeStep{Name: "late", DependsOn: []string{"fast"}, Hook: func(context.Context, int) error {
		startLate()
		return nil
	}}
	g := mustGraph(t, fast, slow, late)
	_, err := execute(t, context.Background(), g, dag.Options{})
	require.NoError(t, err)
}

func TestMaxParallelOneRunsOneAtATime(t *testing.T) {
	rec := &dagtest.Recorder{}
	var steps []dag.Step
	for i := range 12 {
		steps = append(steps, &dagtest.FakeStep{Name: stepName(i), Delay: time.Millisecond, Rec: rec})
	}
	g := mustGraph(t, steps...)
	_, err := execute(t, context.Background(), g, dag.Options{MaxParallel: 1})
	require.NoError(t, err)
	assert.Equal(t, 1, rec.MaxConcurrent())
	// Sequential means every finish precedes the next start.
	entries := rec.Entries()
	for i := 0; i+1 < len(entries); i += 2 {
		assert.Equal(t, dagtest.KindStart, entries[i].Kind)
		assert.Equal(t, dagtest.KindFinish, entries[i+1].Kind)
		assert.Equal(t, entries[i].Step, entries[i+1].Step)
	}
}

func TestMaxParallelBoundIsReachedAndNeverExceeded(t *testing.T) {
	const k, n = 3, 24
	rec := &dagtest.Recorder{}
	var started atomic.Int32
	kRunning, reachedK := closeOnce()
	var steps []dag.Step
	for i := range n {
		steps = append(steps, &dagtest.FakeStep{Name: stepName(i), Rec: rec, Delay: 200 * time.Microsecond,
			Hook: func(ctx context.Context, _ int) error {
				if started.Add(1) == k {
					reachedK()
				}
				// The first k steps hold their slots until k run at once.
				return waitClosed(ctx, kRunning, "k steps to run at once")
			}})
	}
	g := mustGraph(t, steps...)
	_, err := execute(t, context.Background(), g, dag.Options{MaxParallel: k})
	require.NoError(t, err)
	assert.Equal(t, k, rec.MaxConcurrent())
}

func TestFailureCancelsRunningSiblingsAndSkipsTheRest(t *testing.T) {
	siblingStarted, startSibling := closeOnce()
	boom := errors.New("image not found")
	rec := &dagtest.Recorder{}
	log := &dagtest.EventLog{}
	steps := asSteps(
		&dagtest.FakeStep{Name: "net", Rec: rec},
		// boot fails once sibling is surely running.
		&dagtest.FakeStep{Name: "boot", DependsOn: []string{"net"}, Rec: rec, FailAlways: true, Err: boom,
			Hook: func(ctx context.Context, _ int) error { return waitClosed(ctx, siblingStarted, "sibling to start") }},
		&dagtest.FakeStep{Name: "sibling", DependsOn: []string{"net"}, Rec: rec, Block: true,
			Hook: func(context.Context, int) error { startSibling(); return nil }},
		&dagtest.FakeStep{Name: "after_sibling", DependsOn: []string{"sibling"}, Rec: rec},
		&dagtest.FakeStep{Name: "after_boot", DependsOn: []string{"boot"}, Rec: rec},
	)
	g := mustGraph(t, steps...)
	res, err := execute(t, context.Background(), g, dag.Options{Observers: []dag.Observer{log}})
	require.Error(t, err)

	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, "boot", serr.Step)
	assert.False(t, serr.Cancelled)
	assert.Equal(t, 1, serr.Attempts)
	assert.ErrorIs(t, err, boom)
	assert.NotErrorIs(t, err, dag.ErrCancelled)
	assert.Equal(t, `step "boot" failed after 1 attempt: image not found`, err.Error())

	assert.Equal(t, map[string]dag.Outcome{
		"net":           dag.OutcomeUndone,
		"boot":          dag.OutcomeFailed,
		"sibling":       dag.OutcomeCancelled,
		"after_sibling": dag.OutcomeSkipped,
		"after_boot":    dag.OutcomeSkipped,
	}, outcomes(res))
	sib, _ := res.Step("sibling")
	assert.ErrorIs(t, sib.Err, context.Canceled)
	assert.Equal(t, []dag.EventKind{dag.EventStarted, dag.EventCancelled, dag.EventUndoing, dag.EventUndone}, log.Kinds("sibling"))
	assert.Equal(t, []dag.EventKind{dag.EventSkipped}, log.Kinds("after_sibling"))
	_, ran := rec.First(dagtest.KindStart, "after_sibling")
	assert.False(t, ran)
}

func TestCallerCancellationMidStep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &dagtest.Recorder{}
	network := &dagtest.FakeStep{Name: "network", Rec: rec}
	boot := &dagtest.FakeStep{Name: "boot", DependsOn: []string{"network"}, Rec: rec, Block: true,
		Hook: func(context.Context, int) error { cancel(); return nil }} // Ctrl-C while boot runs
	provision := &dagtest.FakeStep{Name: "provision", DependsOn: []string{"boot"}, Rec: rec}
	g := mustGraph(t, network, boot, provision)

	res, err := execute(t, ctx, g, dag.Options{})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, dag.ErrCancelled)
	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	assert.True(t, serr.Cancelled)
	assert.Equal(t, "boot", serr.Step)
	assert.Equal(t, `launch cancelled while step "boot" was running: context canceled`, err.Error())

	assert.Equal(t, map[string]dag.Outcome{
		"network":   dag.OutcomeUndone,
		"boot":      dag.OutcomeCancelled,
		"provision": dag.OutcomeSkipped,
	}, outcomes(res))
	// Rollback ran although ctx was cancelled, under a live context,
	// dependents first: boot half-ran, so it is undone too, before network.
	assert.Equal(t, []string{"boot", "network"}, rec.Order(dagtest.KindUndoStart))
	for _, e := range rec.Entries() {
		if e.Kind == dagtest.KindUndoStart || e.Kind == dagtest.KindUndoFinish {
			assert.NoError(t, e.CtxErr, "undo of %s saw a cancelled context", e.Step)
		}
	}
	assert.Zero(t, provision.Undos(), "a step that never started is not undone")
}

func TestCallerCancellationSkipsQueuedSteps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := &dagtest.FakeStep{Name: "a", Block: true, Hook: func(context.Context, int) error { cancel(); return nil }}
	second, third := step("b"), step("c")
	res, err := execute(t, ctx, mustGraph(t, first, second, third), dag.Options{MaxParallel: 1})
	require.ErrorIs(t, err, dag.ErrCancelled)
	assert.Equal(t, map[string]dag.Outcome{"a": dag.OutcomeCancelled, "b": dag.OutcomeSkipped, "c": dag.OutcomeSkipped}, outcomes(res))
	assert.Zero(t, second.Attempts()+third.Attempts())
}

func TestCallerCancelledBeforeExecute(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	log := &dagtest.EventLog{}
	a := step("a")
	g := mustGraph(t, a, step("b", "a"))
	res, err := execute(t, ctx, g, dag.Options{Observers: []dag.Observer{log}})
	require.ErrorIs(t, err, dag.ErrCancelled)
	assert.Equal(t, "launch cancelled: context canceled", err.Error())
	assert.Equal(t, map[string]dag.Outcome{"a": dag.OutcomeSkipped, "b": dag.OutcomeSkipped}, outcomes(res))
	assert.Zero(t, a.Attempts())
	assert.Equal(t, []dag.EventKind{dag.EventSkipped}, log.Kinds("a"))
	assert.Equal(t, []dag.EventKind{dag.EventSkipped}, log.Kinds("b"))
}

func TestPanicBecomesErrorNamingTheStepAndRollsBack(t *testing.T) {
	rec := &dagtest.Recorder{}
	network := &dagtest.FakeStep{Name: "network", Rec: rec}
	boot := &dagtest.FakeStep{Name: "boot", DependsOn: []string{"network"}, Panic: "nil map in boot", Rec: rec,
		Policy: &dag.RetryPolicy{MaxAttempts: 3, Retryable: func(error) bool { return true }}}
	g := mustGraph(t, network, boot)
	res, err := execute(t, context.Background(), g, dag.Options{Clock: dagtest.NewFakeClock(time.Unix(0, 0))})
	require.Error(t, err)

	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, "boot", serr.Step)
	assert.Equal(t, 1, serr.Attempts, "a panic is a bug, never retried")
	var perr *dag.PanicError
	require.ErrorAs(t, err, &perr)
	assert.Equal(t, "nil map in boot", perr.Value)
	assert.Contains(t, string(perr.Stack), "dagtest.(*FakeStep).Run", "the stack shows where it panicked")
	assert.Contains(t, err.Error(), `step "boot" failed after 1 attempt: panic: nil map in boot`)

	assert.Equal(t, dag.OutcomeUndone, outcomes(res)["network"])
	assert.Equal(t, 1, network.Undos())
}

func TestPanicWithErrorValueIsReachable(t *testing.T) {
	sentinel := errors.New("sentinel")
	g := mustGraph(t, &dagtest.FakeStep{Name: "p", Panic: sentinel})
	_, err := execute(t, context.Background(), g, dag.Options{})
	assert.ErrorIs(t, err, sentinel)
}

func TestGoexitInStepFailsInsteadOfHanging(t *testing.T) {
	log := &dagtest.EventLog{}
	quitsInUndo := &dagtest.FakeStep{Name: "quits_in_undo", UndoHook: func(context.Context) error {
		runtime.Goexit()
		return nil
	}}
	quits := &dagtest.FakeStep{Name: "quits", DependsOn: []string{"quits_in_undo"}, Hook: func(context.Context, int) error {
		runtime.Goexit()
		return nil
	}}
	after := step("after", "quits")
	res, err := execute(t, context.Background(), mustGraph(t, quitsInUndo, quits, after), dag.Options{Observers: []dag.Observer{log}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `step "quits" failed after 1 attempt`)
	assert.Contains(t, err.Error(), "Goexit")
	assert.Contains(t, err.Error(), `rollback: undo "quits_in_undo"`)

	q, _ := res.Step("quits")
	assert.Equal(t, dag.OutcomeFailed, q.Outcome)
	assert.Equal(t, 1, q.Attempts)
	assert.Len(t, q.AttemptSpans, 1)
	assert.Equal(t, []dag.EventKind{dag.EventStarted, dag.EventFailed, dag.EventUndoing, dag.EventUndone}, log.Kinds("quits"))
	u, _ := res.Step("quits_in_undo")
	assert.Equal(t, dag.OutcomeUndoFailed, u.Outcome)
	require.NotNil(t, u.Undo)
	assert.Contains(t, u.Undo.Err, "Goexit")
	assert.Equal(t, dag.OutcomeSkipped, outcomes(res)["after"])
}

func TestResultRecordsTimingsOrderAndCriticalPath(t *testing.T) {
	ms := time.Millisecond
	//   a(40ms) -> b(30ms) -> d(1ms)
	//   c(5ms) ---------------^
	g := mustGraph(t,
		&dagtest.FakeStep{Name: "a", Delay: 40 * ms},
		&dagtest.FakeStep{Name: "b", DependsOn: []string{"a"}, Delay: 30 * ms},
		&dagtest.FakeStep{Name: "c", Delay: 5 * ms},
		&dagtest.FakeStep{Name: "d", DependsOn: []string{"b", "c"}, Delay: ms},
	)
	before := time.Now()
	res, err := execute(t, context.Background(), g, dag.Options{})
	require.NoError(t, err)

	assert.False(t, res.StartedAt.Before(before))
	assert.GreaterOrEqual(t, res.Wall, 71*ms)
	ids := []string{}
	for _, s := range res.Steps {
		ids = append(ids, s.ID)
	}
	// a and c start together (either first), then b, then d.
	assert.ElementsMatch(t, []string{"a", "c"}, ids[:2])
	assert.Equal(t, []string{"b", "d"}, ids[2:])
	for i := 1; i < len(res.Steps); i++ {
		assert.GreaterOrEqual(t, res.Steps[i].Start, res.Steps[i-1].Start, "steps are in start order")
	}

	a, _ := res.Step("a")
	b, _ := res.Step("b")
	d, _ := res.Step("d")
	assert.GreaterOrEqual(t, a.Duration, 40*ms)
	assert.GreaterOrEqual(t, b.Start, a.Start+a.Duration, "b starts after a ends")
	assert.Equal(t, []string{"b", "c"}, d.Deps)
	require.Len(t, b.AttemptSpans, 1)
	assert.Equal(t, b.Start, b.AttemptSpans[0].Start)
	assert.Equal(t, b.Duration, b.AttemptSpans[0].Duration)
	assert.Nil(t, b.Undo)

	assert.Equal(t, []string{"a", "b", "d"}, res.CriticalPath)
	assert.GreaterOrEqual(t, res.CriticalPathDuration, 71*ms)
	assert.LessOrEqual(t, res.CriticalPathDuration, res.Wall)
}

func TestSkippedStepsFollowStartedOnesInIDOrder(t *testing.T) {
	g := mustGraph(t, &dagtest.FakeStep{Name: "root", FailAlways: true}, step("zeta", "root"), step("alpha", "root"), step("mid", "zeta"))
	res, err := execute(t, context.Background(), g, dag.Options{})
	require.Error(t, err)
	var ids []string
	for _, s := range res.Steps {
		ids = append(ids, s.ID)
	}
	assert.Equal(t, []string{"root", "alpha", "mid", "zeta"}, ids)
	assert.Equal(t, []string{"root"}, res.CriticalPath, "only root ran")
}

func TestEventsCoverEveryTransitionWithTimestamps(t *testing.T) {
	epoch := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := dagtest.NewFakeClock(epoch)
	log := &dagtest.EventLog{}
	g := mustGraph(t,
		&dagtest.FakeStep{Name: "net"},
		&dagtest.FakeStep{Name: "flaky", DependsOn: []string{"net"}, FailUntil: 1,
			Policy: &dag.RetryPolicy{MaxAttempts: 2, InitialDelay: time.Second, Retryable: func(error) bool { return true }}},
		&dagtest.FakeStep{Name: "broken", DependsOn: []string{"flaky"}, FailAlways: true, UndoErr: errors.New("busy")},
		&dagtest.FakeStep{Name: "never", DependsOn: []string{"broken"}},
	)
	_, err := execute(t, context.Background(), g, dag.Options{Clock: clock, Observers: []dag.Observer{log}})
	require.Error(t, err)

	assert.Equal(t, []dag.EventKind{dag.EventStarted, dag.EventSucceeded, dag.EventUndoing, dag.EventUndone}, log.Kinds("net"))
	assert.Equal(t, []dag.EventKind{dag.EventStarted, dag.EventRetrying, dag.EventStarted, dag.EventSucceeded, dag.EventUndoing, dag.EventUndone}, log.Kinds("flaky"))
	assert.Equal(t, []dag.EventKind{dag.EventStarted, dag.EventFailed, dag.EventUndoing, dag.EventUndoFailed}, log.Kinds("broken"))
	assert.Equal(t, []dag.EventKind{dag.EventSkipped}, log.Kinds("never"))

	retry := log.Of(dag.EventRetrying, "flaky")
	require.Len(t, retry, 1)
	assert.Equal(t, 1, retry[0].Attempt)
	assert.Equal(t, time.Second, retry[0].Delay)
	assert.Error(t, retry[0].Err)
	second := log.Of(dag.EventStarted, "flaky")[1]
	assert.Equal(t, 2, second.Attempt)
	// The fake clock advanced by the backoff, so the second attempt starts
	// one second into the run.
	assert.Equal(t, time.Second, second.Offset)
	assert.Equal(t, epoch.Add(time.Second), second.Time)
	succeeded := log.Of(dag.EventSucceeded, "flaky")[0]
	assert.Equal(t, time.Second, succeeded.Duration, "a terminal event carries the step's duration, backoff included")
	undoFailed := log.Of(dag.EventUndoFailed, "broken")[0]
	assert.EqualError(t, undoFailed.Err, "busy")
	for _, e := range log.Events() {
		assert.False(t, e.Time.IsZero(), "%s %s has no time", e.Kind, e.Step)
	}
}

func TestWrapInjectsFaults(t *testing.T) {
	rec := &dagtest.Recorder{}
	steps := fakeSteps([][]string{nil, {stepName(0)}, {stepName(1)}}, rec)
	g := mustGraph(t, asSteps(steps...)...)
	res, err := execute(t, context.Background(), g, dag.Options{Wrap: dagtest.FailStep(stepName(1))})
	require.ErrorIs(t, err, dagtest.ErrInjected)
	assert.Equal(t, map[string]dag.Outcome{stepName(0): dag.OutcomeUndone, stepName(1): dag.OutcomeFailed, stepName(2): dag.OutcomeSkipped}, outcomes(res))
	assert.Zero(t, steps[1].Attempts(), "the wrapper replaced the step")

	// The graph itself is unchanged: without Wrap everything succeeds.
	_, err = execute(t, context.Background(), g, dag.Options{})
	require.NoError(t, err)
}

func TestWrapMustKeepTheStepID(t *testing.T) {
	g := mustGraph(t, step("a"))
	res, err := g.Execute(context.Background(), dag.Options{Wrap: func(dag.Step) dag.Step { return step("b") }})
	require.Error(t, err)
	assert.Nil(t, res)
	assert.Contains(t, err.Error(), `"a"`)
}

func TestEmptyGraphSucceeds(t *testing.T) {
	g := mustGraph(t)
	res, err := execute(t, context.Background(), g, dag.Options{})
	require.NoError(t, err)
	assert.Empty(t, res.Steps)
	assert.Empty(t, res.CriticalPath)
}

func TestExecuteIsReusableAndConcurrent(t *testing.T) {
	steps := fakeSteps(randomDeps(3, 50, 3), nil)
	g := mustGraph(t, asSteps(steps...)...)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := g.Execute(context.Background(), dag.Options{MaxParallel: 2})
			errs <- err
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	for _, s := range steps {
		assert.Equal(t, 4, s.Attempts())
	}
}
