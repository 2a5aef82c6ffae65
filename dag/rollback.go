package dag

import (
	"context"

	"github.com/sourcegraph/conc/panics"
)

// rollback undoes, in reverse dependency order, every step that ran and
// implements Undoer: those that succeeded, and those that failed or were
// cancelled part-way, which may hold half of what they meant to acquire.
//
// A step's undo starts once the undos of all its dependents have finished;
// a dependent with nothing to undo counts as finished at once, so ordering
// holds through steps that are not Undoers. Undo errors do not stop the
// rollback: a later undo may still succeed and the errors are reported.
// It returns the undo failures, dependents first.
func (x *execution) rollback() []*UndoError {
	var cancel context.CancelFunc
	x.undoCtx, cancel = context.WithTimeout(context.WithoutCancel(x.parent), x.undoTimeout)
	defer cancel()

	g := x.g
	n := len(x.steps)
	pendingDependents := make([]int32, n)
	// settled is a FIFO of steps whose dependents are all undone (or had
	// nothing to undo); each step enters it once.
	settled := make([]int32, 0, n)
	for i := range n {
		pendingDependents[i] = int32(len(g.dependents[i]))
		if pendingDependents[i] == 0 {
			settled = append(settled, int32(i))
		}
	}
	release := func(i int32) {
		for _, d := range g.deps[i] {
			pendingDependents[d]--
			if pendingDependents[d] == 0 {
				settled = append(settled, d)
			}
		}
	}

	head, running := 0, 0
	for {
		for head < len(settled) {
			i := settled[head]
			if _, ok := x.steps[i].(Undoer); !ok || x.nodes[i].attempts == 0 {
				head++
				release(i)
				continue
			}
			if x.maxParallel > 0 && running >= x.maxParallel {
				break
			}
			head++
			running++
			x.submit(-i - 1)
		}
		if running == 0 {
			break
		}
		i := <-x.done
		x.idle++
		running--
		release(i)
	}

	var errs []*UndoError
	for i := n - 1; i >= 0; i-- {
		if err := x.nodes[i].undoErr; err != nil {
			errs = append(errs, &UndoError{Step: x.g.ids[i], Err: err})
		}
	}
	return errs
}

// undo runs the Undo of step i.
func (x *execution) undo(i int32, catcher **panics.Catcher) {
	nd := &x.nodes[i]
	id := x.g.ids[i]
	undoer := x.steps[i].(Undoer)

	start := x.offset()
	span := &Span{Start: start}
	nd.undo = span
	x.emit(Event{Kind: EventUndoing, Step: id, Offset: start, Attempt: nd.attempts})

	var err error
	(*catcher).Try(func() { err = undoer.Undo(x.undoCtx) })
	if recovered := (*catcher).Recovered(); recovered != nil {
		*catcher = new(panics.Catcher)
		err = &PanicError{Value: recovered.Value, Stack: recovered.Stack}
	}

	end := x.offset()
	span.Duration = end - start
	done := Event{Kind: EventUndone, Step: id, Offset: end, Attempt: nd.attempts, Duration: span.Duration}
	if err != nil {
		span.Err = err.Error()
		nd.undoErr = err
		done.Kind, done.Err = EventUndoFailed, err
	}
	// A step that failed or was cancelled keeps that outcome; its undo is
	// visible in its Undo span.
	if nd.outcome == OutcomeOK {
		nd.outcome = OutcomeUndone
		if err != nil {
			nd.outcome = OutcomeUndoFailed
		}
	}
	x.emit(done)
}
