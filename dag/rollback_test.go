package dag_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
)

func TestRollbackUndoesDependentsFirstAndIndependentUndosOverlap(t *testing.T) {
	//   network -> volume -> container
	//   network -> egress
	//   container, egress -> agent (fails)
	// container and egress are independent: their undos each wait for the
	// other to start, which deadlocks (and fails) if undos run one by one.
	rec := &dagtest.Recorder{}
	containerUndoing, undoContainer := closeOnce()
	egressUndoing, undoEgress := closeOnce()
	network := &dagtest.FakeStep{Name: "network", Rec: rec}
	volume := &dagtest.FakeStep{Name: "volume", DependsOn: []string{"network"}, Rec: rec}
	container := &dagtest.FakeStep{Name: "container", DependsOn: []string{"volume"}, Rec: rec,
		UndoHook: func(ctx context.Context) error {
			undoContainer()
			return waitClosed(ctx, egressUndoing, "egress undo to start")
		}}
	egress := &dagtest.FakeStep{Name: "egress", DependsOn: []string{"network"}, Rec: rec,
		UndoHook: func(ctx context.Context) error {
			undoEgress()
			return waitClosed(ctx, containerUndoing, "container undo to start")
		}}
	agent := &dagtest.FakeStep{Name: "agent", DependsOn: []string{"container", "egress"}, Rec: rec, FailAlways: true}
	g := mustGraph(t, network, volume, container, egress, agent)

	res, err := execute(t, context.Background(), g, dag.Options{})
	require.Error(t, err)
	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	assert.Empty(t, serr.UndoErrors)

	finished := func(id string) int {
		e, ok := rec.First(dagtest.KindUndoFinish, id)
		require.True(t, ok, id)
		return e.Seq
	}
	started := func(id string) int {
		e, ok := rec.First(dagtest.KindUndoStart, id)
		require.True(t, ok, id)
		return e.Seq
	}
	// agent failed and half-ran, so it is undone first of all.
	assert.Less(t, finished("agent"), started("container"))
	assert.Less(t, finished("agent"), started("egress"))
	assert.Less(t, finished("container"), started("volume"))
	assert.Less(t, finished("volume"), started("network"))
	assert.Less(t, finished("egress"), started("network"))
	assert.GreaterOrEqual(t, rec.MaxConcurrentUndos(), 2)

	for _, id := range []string{"network", "volume", "container", "egress"} {
		r, _ := res.Step(id)
		assert.Equal(t, dag.OutcomeUndone, r.Outcome, id)
		require.NotNil(t, r.Undo, id)
		assert.Empty(t, r.Undo.Err)
	}
	a, _ := res.Step("agent")
	assert.Equal(t, dag.OutcomeFailed, a.Outcome, "an undone failed step stays failed")
	require.NotNil(t, a.Undo)
}

func TestRollbackOrderHoldsThroughStepsWithoutUndo(t *testing.T) {
	// a (undo) -> b (no undo) -> c (undo) -> d (fails): c before a.
	rec := &dagtest.Recorder{}
	a := &dagtest.FakeStep{Name: "a", Rec: rec}
	b := dagtest.Plain(&dagtest.FakeStep{Name: "b", DependsOn: []string{"a"}, Rec: rec})
	c := &dagtest.FakeStep{Name: "c", DependsOn: []string{"b"}, Rec: rec, UndoWait: sleepChan(20 * time.Millisecond)}
	d := dagtest.Plain(&dagtest.FakeStep{Name: "d", DependsOn: []string{"c"}, Rec: rec, FailAlways: true})
	res, err := execute(t, context.Background(), mustGraph(t, a, b, c, d), dag.Options{})
	require.Error(t, err)
	assert.Equal(t, []string{"c", "a"}, rec.Order(dagtest.KindUndoStart))
	cDone, _ := rec.First(dagtest.KindUndoFinish, "c")
	aStart, _ := rec.First(dagtest.KindUndoStart, "a")
	assert.Less(t, cDone.Seq, aStart.Seq)
	assert.Equal(t, map[string]dag.Outcome{"a": dag.OutcomeUndone, "b": dag.OutcomeOK, "c": dag.OutcomeUndone, "d": dag.OutcomeFailed}, outcomes(res))
}

// sleepChan returns a channel closed after d.
func sleepChan(d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(d, func() { close(ch) })
	return ch
}

func TestUndoErrorsAreAttachedWithoutReplacingTheCause(t *testing.T) {
	cause := errors.New("pull access denied")
	networkErr := errors.New("network has active endpoints")
	rec := &dagtest.Recorder{}
	g := mustGraph(t,
		&dagtest.FakeStep{Name: "network", Rec: rec, UndoErr: networkErr},
		&dagtest.FakeStep{Name: "volume", DependsOn: []string{"network"}, Rec: rec},
		&dagtest.FakeStep{Name: "boot", DependsOn: []string{"volume"}, Rec: rec, FailAlways: true, Err: cause},
	)
	res, err := execute(t, context.Background(), g, dag.Options{})
	require.Error(t, err)
	assert.ErrorIs(t, err, cause)
	assert.Equal(t, `step "boot" failed after 1 attempt: pull access denied; rollback: undo "network": network has active endpoints`, err.Error())
	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, "boot", serr.Step)
	require.Len(t, serr.UndoErrors, 1)
	assert.Equal(t, "network", serr.UndoErrors[0].Step)
	assert.ErrorIs(t, serr.UndoErrors[0], networkErr)

	n, _ := res.Step("network")
	assert.Equal(t, dag.OutcomeUndoFailed, n.Outcome)
	assert.ErrorIs(t, n.Err, networkErr)
	require.NotNil(t, n.Undo)
	assert.Equal(t, networkErr.Error(), n.Undo.Err)
	// A failed undo does not stop the rest of the rollback.
	assert.Equal(t, dag.OutcomeUndone, outcomes(res)["volume"])
}

func TestHalfRunStepsAreUndoneToo(t *testing.T) {
	siblingRunning, markRunning := closeOnce()
	failed := &dagtest.FakeStep{Name: "failed", FailAlways: true,
		Hook: func(ctx context.Context, _ int) error { return waitClosed(ctx, siblingRunning, "cancelled to start") }}
	cancelled := &dagtest.FakeStep{Name: "cancelled", Block: true,
		Hook: func(context.Context, int) error { markRunning(); return nil }}
	skipped := &dagtest.FakeStep{Name: "skipped", DependsOn: []string{"cancelled"}}
	_, err := execute(t, context.Background(), mustGraph(t, failed, cancelled, skipped), dag.Options{})
	require.Error(t, err)
	assert.Equal(t, 1, failed.Undos())
	assert.Equal(t, 1, cancelled.Undos())
	assert.Zero(t, skipped.Undos())
}

func TestNoRollbackOnSuccess(t *testing.T) {
	a := step("a")
	b := step("b", "a")
	_, err := execute(t, context.Background(), mustGraph(t, a, b), dag.Options{})
	require.NoError(t, err)
	assert.Zero(t, a.Undos()+b.Undos())
}

func TestUndoTimeoutBoundsTheRollback(t *testing.T) {
	stuck := &dagtest.FakeStep{Name: "stuck", UndoHook: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	fail := &dagtest.FakeStep{Name: "fail", DependsOn: []string{"stuck"}, FailAlways: true}
	start := time.Now()
	res, err := execute(t, context.Background(), mustGraph(t, stuck, fail), dag.Options{UndoTimeout: 40 * time.Millisecond})
	require.Error(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond)
	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	require.Len(t, serr.UndoErrors, 1)
	assert.ErrorIs(t, serr.UndoErrors[0], context.DeadlineExceeded)
	assert.Equal(t, dag.OutcomeUndoFailed, outcomes(res)["stuck"])
}

func TestUndoPanicIsReported(t *testing.T) {
	g := mustGraph(t,
		&dagtest.FakeStep{Name: "a", UndoHook: func(context.Context) error { panic("undo exploded") }},
		&dagtest.FakeStep{Name: "b", DependsOn: []string{"a"}, FailAlways: true},
	)
	res, err := execute(t, context.Background(), g, dag.Options{})
	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, "b", serr.Step)
	require.Len(t, serr.UndoErrors, 1)
	var perr *dag.PanicError
	require.ErrorAs(t, serr.UndoErrors[0], &perr)
	assert.Equal(t, "undo exploded", perr.Value)
	assert.Equal(t, dag.OutcomeUndoFailed, outcomes(res)["a"])
}

func TestRollbackRespectsMaxParallel(t *testing.T) {
	rec := &dagtest.Recorder{}
	var steps []dag.Step
	var names []string
	for i := range 8 {
		steps = append(steps, &dagtest.FakeStep{Name: stepName(i), Rec: rec, UndoWait: sleepChan(time.Millisecond)})
		names = append(names, stepName(i))
	}
	var attempts atomic.Int32
	steps = append(steps, &dagtest.FakeStep{Name: "last", DependsOn: names, FailAlways: true,
		Hook: func(context.Context, int) error { attempts.Add(1); return nil }})
	_, err := execute(t, context.Background(), mustGraph(t, steps...), dag.Options{MaxParallel: 1})
	require.Error(t, err)
	assert.Equal(t, int32(1), attempts.Load())
	assert.Equal(t, 1, rec.MaxConcurrentUndos())
	assert.Len(t, rec.Order(dagtest.KindUndoFinish), 8)
}
