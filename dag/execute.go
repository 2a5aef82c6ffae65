package dag

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sourcegraph/conc/panics"
)

// DefaultUndoTimeout bounds a rollback when Options.UndoTimeout is zero.
const DefaultUndoTimeout = 2 * time.Minute

// Execute runs every step of g, each the moment its last dependency
// succeeded, at most opts.MaxParallel at a time.
//
// Scheduling is event-driven: a single coordinator (the calling goroutine)
// keeps a count of unfinished dependencies per step and, when a step
// succeeds, hands each dependent whose count reaches zero at once to an
// idle worker goroutine, starting one when none is idle. Nothing waits on a
// step's dependencies but the coordinator's counters: no goroutine or slot
// is held for a step that is not ready. A step holds its parallelism slot
// through all its attempts, backoff included.
//
// Execute may be called any number of times, also concurrently, on the same
// Graph; each call runs the steps anew.
//
// When a step fails for good (or the caller's ctx is cancelled) the context
// of the running steps is cancelled; they are reported cancelled, steps that
// never started are reported skipped, and then every step that ran and
// implements Undoer is undone, dependents before their dependencies,
// independent undos concurrently, under a context the caller's cancellation
// cannot cancel, bounded by opts.UndoTimeout as a whole. The rollback
// honours opts.MaxParallel too.
//
// The result is always returned, complete, once everything has stopped
// (nil only when opts.Wrap broke a step's identity). The error is nil when
// every step succeeded and otherwise a *StepError: see its documentation for
// the failed and the cancelled case. A panic in Run or Undo is recovered
// into a *PanicError; a timed-out attempt fails with a *TimeoutError.
func (g *Graph) Execute(ctx context.Context, opts Options) (*Result, error) {
	x, err := g.newExecution(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer x.cancel(nil)

	x.runForward()
	var undoErrs []*UndoError
	if x.incomplete {
		undoErrs = x.rollback()
	}
	close(x.tasks) // every task has finished: let the workers exit
	res := x.result()
	if !x.incomplete {
		return res, nil
	}
	return res, x.stepError(res, undoErrs)
}

// execution is the state of one Execute call. The coordinator owns
// everything except nodes[i] while step i's goroutine runs; that goroutine
// hands nodes[i] back by sending i on done.
type execution struct {
	g           *Graph
	steps       []Step
	clock       Clock
	observers   []Observer
	maxParallel int
	undoTimeout time.Duration
	rand        func() float64

	parent context.Context
	// ctx is what steps run under; it is cancelled by the first failure.
	ctx     context.Context
	ctxDone <-chan struct{}
	cancel  context.CancelCauseFunc

	startedAt time.Time
	realClock bool
	nodes     []node
	// firstSpans backs every step's first attempt span, sparing an
	// allocation per step; retries append beyond it.
	firstSpans []Span
	// firstFailure is the index of the first step that failed for good, -1
	// while none has.
	firstFailure atomic.Int32
	// tasks carries work to the workers (see perform) and done carries the
	// index of each finished task back to the coordinator. Both are
	// buffered for every task that can be in flight, so neither side blocks
	// on a send.
	tasks chan int32
	done  chan int32
	// idle counts the workers waiting for a task; coordinator only.
	idle int
	// dispatched lists the steps in the order they were launched.
	dispatched []int32
	// undoCtx is what undos run under; set before the rollback starts.
	undoCtx context.Context
	// incomplete is set by the coordinator when not every step succeeded.
	incomplete bool
}

// node is the record of one step during an execution.
type node struct {
	outcome  Outcome
	attempts int
	// start and end are offsets from startedAt of the first attempt's start
	// and the last attempt's end.
	start, end time.Duration
	// attemptStart is the offset of the current attempt's start.
	attemptStart time.Duration
	err          error
	spans        []Span
	// seq is the order in which the coordinator launched the step, -1 if it
	// never did.
	seq     int32
	undo    *Span
	undoErr error
}

func (g *Graph) newExecution(ctx context.Context, opts Options) (*execution, error) {
	steps := g.steps
	if opts.Wrap != nil {
		steps = make([]Step, len(g.steps))
		for i, s := range g.steps {
			w := opts.Wrap(s)
			if w == nil || w.ID() != s.ID() {
				return nil, fmt.Errorf("dag: Options.Wrap returned a step without ID %q; a wrapper must keep the step's ID and Deps", s.ID())
			}
			steps[i] = w
		}
	}
	x := &execution{
		g:           g,
		steps:       steps,
		clock:       opts.Clock,
		observers:   opts.Observers,
		maxParallel: opts.MaxParallel,
		undoTimeout: opts.UndoTimeout,
		parent:      ctx,
	}
	if x.clock == nil {
		x.clock = RealClock{}
	}
	_, x.realClock = x.clock.(RealClock)
	if x.maxParallel < 0 {
		x.maxParallel = 0
	}
	if x.undoTimeout <= 0 {
		x.undoTimeout = DefaultUndoTimeout
	}
	if opts.Rand == nil {
		x.rand = rand.Float64
	} else {
		// A caller's source need not be safe for concurrent use.
		var mu sync.Mutex
		x.rand = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			return opts.Rand()
		}
	}
	x.ctx, x.cancel = context.WithCancelCause(ctx)
	x.ctxDone = x.ctx.Done()
	n := len(steps)
	x.nodes = make([]node, n)
	x.firstSpans = make([]Span, n)
	x.firstFailure.Store(-1)
	buffer := n
	if x.maxParallel > 0 && x.maxParallel < n {
		buffer = x.maxParallel
	}
	x.tasks = make(chan int32, buffer)
	x.done = make(chan int32, buffer)
	x.startedAt = x.clock.Now()
	return x, nil
}

// runForward is the coordinator of the run phase. It returns once no step
// is running and nothing more will be launched.
func (x *execution) runForward() {
	g := x.g
	n := len(x.steps)
	remaining := make([]int32, n)
	// ready is a FIFO of steps whose dependencies all succeeded; each step
	// enters it at most once, so a slice of capacity n never reallocates.
	ready := make([]int32, 0, n)
	for i := range n {
		x.nodes[i].seq = -1
		remaining[i] = int32(len(g.deps[i]))
		if remaining[i] == 0 {
			ready = append(ready, int32(i))
		}
	}
	head, running := 0, 0
	stopped := false
	finished := func(i int32) {
		x.idle++
		running--
		if x.nodes[i].outcome != OutcomeOK {
			stopped = true
			return
		}
		for _, d := range g.dependents[i] {
			remaining[d]--
			if remaining[d] == 0 {
				ready = append(ready, d)
			}
		}
	}
	for {
		for head < len(ready) && !stopped && (x.maxParallel == 0 || running < x.maxParallel) {
			if x.interrupted() {
				stopped = true
				break
			}
			if x.idle == 0 {
				// Recycle a worker that has just finished rather than start
				// another goroutine.
				select {
				case i := <-x.done:
					finished(i)
					continue
				default:
				}
			}
			i := ready[head]
			x.nodes[i].seq = int32(head)
			head++
			running++
			x.submit(i)
		}
		if running == 0 {
			break
		}
		finished(<-x.done)
	}
	x.dispatched = ready[:head]

	var skippedAt time.Duration = -1
	for i := range x.nodes {
		nd := &x.nodes[i]
		if nd.outcome == "" {
			nd.outcome = OutcomeSkipped
		}
		if nd.outcome == OutcomeOK {
			continue
		}
		x.incomplete = true
		if nd.attempts == 0 && nd.seq < 0 {
			// Steps launched but skipped reported themselves.
			if skippedAt < 0 {
				skippedAt = x.offset()
			}
			x.emit(Event{Kind: EventSkipped, Step: x.g.ids[i], Offset: skippedAt})
		}
	}
}

// offset returns the time since the start of the execution. With the real
// clock it reads only Go's monotonic clock (time.Since), which is cheaper
// than a full time.Now and immune to wall-clock steps.
func (x *execution) offset() time.Duration {
	if x.realClock {
		return time.Since(x.startedAt)
	}
	return x.clock.Now().Sub(x.startedAt)
}

// interrupted reports whether the run context is done, without taking the
// context's lock.
func (x *execution) interrupted() bool {
	select {
	case <-x.ctxDone:
		return true
	default:
		return false
	}
}

// submit hands task t to an idle worker, starting one if none is idle.
// Workers live for one execution; reusing them spares a goroutine start
// and its stack growth per step.
func (x *execution) submit(t int32) {
	if x.idle == 0 {
		go x.work()
	} else {
		x.idle--
	}
	x.tasks <- t
}

// work is a worker: it performs tasks until the execution closes tasks.
func (x *execution) work() {
	catcher := new(panics.Catcher)
	for t := range x.tasks {
		x.perform(t, &catcher)
	}
}

// perform runs step t (t >= 0) or undoes step -t-1 and reports the index to
// the coordinator, also when the step ends its goroutine with
// runtime.Goexit (say, t.FailNow inside Run): then the step fails and a
// fresh worker replaces this one.
func (x *execution) perform(t int32, catcher **panics.Catcher) {
	i, undo := t, t < 0
	if undo {
		i = -t - 1
	}
	returned := false
	defer func() {
		if !returned {
			x.lostWorker(i, undo)
			go x.work()
		}
		x.done <- i
	}()
	if undo {
		x.undo(i, catcher)
	} else {
		x.run(i, catcher)
	}
	returned = true
}

var errGoexit = errors.New("exited its goroutine (runtime.Goexit) instead of returning")

// lostWorker records the task of a worker that ended in runtime.Goexit as
// failed.
func (x *execution) lostWorker(i int32, undo bool) {
	nd := &x.nodes[i]
	offset := x.offset()
	id := x.g.ids[i]
	if undo {
		nd.undoErr = errGoexit
		nd.undo.Duration = offset - nd.undo.Start
		nd.undo.Err = errGoexit.Error()
		if nd.outcome == OutcomeOK {
			nd.outcome = OutcomeUndoFailed
		}
		x.emit(Event{Kind: EventUndoFailed, Step: id, Offset: offset, Attempt: nd.attempts, Duration: nd.undo.Duration, Err: errGoexit})
		return
	}
	nd.end = offset
	nd.spans = append(nd.spans, Span{Start: nd.attemptStart, Duration: offset - nd.attemptStart, Err: errGoexit.Error()})
	nd.outcome, nd.err = OutcomeFailed, errGoexit
	x.recordFailure(i)
	x.emit(Event{Kind: EventFailed, Step: id, Offset: offset, Attempt: nd.attempts, Duration: nd.end - nd.start, Err: errGoexit})
}

// run performs every attempt of step i.
func (x *execution) run(i int32, catcher **panics.Catcher) {
	nd := &x.nodes[i]
	if x.interrupted() {
		nd.outcome = OutcomeSkipped
		x.emit(Event{Kind: EventSkipped, Step: x.g.ids[i], Offset: x.offset()})
		return
	}
	step := x.steps[i]
	var policy *RetryPolicy
	if r, ok := step.(Retrier); ok {
		policy = r.RetryPolicy()
	}
	var timeout time.Duration
	if t, ok := step.(Timeouter); ok {
		timeout = t.Timeout()
	}

	for attempt := 1; ; attempt++ {
		start := x.offset()
		if attempt == 1 {
			nd.start = start
		}
		nd.attempts, nd.attemptStart = attempt, start
		x.emit(Event{Kind: EventStarted, Step: x.g.ids[i], Offset: start, Attempt: attempt})

		err := x.attempt(step, timeout, catcher)

		nd.end = x.offset()
		span := Span{Start: start, Duration: nd.end - start}
		if err != nil {
			span.Err = err.Error()
		}
		if attempt == 1 {
			x.firstSpans[i] = span
			nd.spans = x.firstSpans[i : i+1 : i+1]
		} else {
			nd.spans = append(nd.spans, span)
		}

		var kind EventKind
		switch {
		case err == nil:
			nd.outcome, kind = OutcomeOK, EventSucceeded
		case x.interrupted():
			nd.outcome, nd.err, kind = OutcomeCancelled, err, EventCancelled
		case isPanic(err) || !policy.retryable(attempt, err):
			// A panic is a bug, not a transient condition: never retried.
			nd.outcome, nd.err, kind = OutcomeFailed, err, EventFailed
			x.recordFailure(i)
		default:
			if x.backoff(i, policy, attempt, err) {
				continue
			}
			return
		}
		x.emit(Event{Kind: kind, Step: x.g.ids[i], Offset: nd.end, Attempt: attempt, Duration: nd.end - nd.start, Err: err})
		return
	}
}

func isPanic(err error) bool {
	_, ok := err.(*PanicError)
	return ok
}

// backoff waits before the next attempt of step i after attempt failed
// with err. It reports false, with the step recorded as cancelled, when the
// execution was cancelled during the wait.
func (x *execution) backoff(i int32, policy *RetryPolicy, attempt int, err error) bool {
	nd := &x.nodes[i]
	delay := policy.Delay(attempt, x.rand())
	x.emit(Event{Kind: EventRetrying, Step: x.g.ids[i], Offset: nd.end, Attempt: attempt, Delay: delay, Duration: nd.end - nd.attemptStart, Err: err})
	sleepErr := x.clock.Sleep(x.ctx, delay)
	if sleepErr == nil {
		return true
	}
	nd.end = x.offset()
	nd.outcome = OutcomeCancelled
	nd.err = fmt.Errorf("interrupted in retry backoff: %w (attempt %d failed: %w)", sleepErr, attempt, err)
	x.emit(Event{Kind: EventCancelled, Step: x.g.ids[i], Offset: nd.end, Attempt: attempt, Duration: nd.end - nd.start, Err: nd.err})
	return false
}

// attempt runs one attempt of step under the per-attempt timeout,
// recovering a panic into a *PanicError.
func (x *execution) attempt(step Step, timeout time.Duration, catcher **panics.Catcher) error {
	ctx := x.ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(x.ctx, timeout)
		defer cancel()
	}
	var err error
	(*catcher).Try(func() { err = step.Run(ctx) })
	if recovered := (*catcher).Recovered(); recovered != nil {
		*catcher = new(panics.Catcher) // a Catcher keeps its first panic
		return &PanicError{Value: recovered.Value, Stack: recovered.Stack}
	}
	if err != nil && timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) && !x.interrupted() {
		return &TimeoutError{After: timeout, Err: err}
	}
	return err
}

// recordFailure makes step i the launch's failure if it is the first, and
// cancels every running step.
func (x *execution) recordFailure(i int32) {
	if x.firstFailure.CompareAndSwap(-1, i) {
		x.cancel(fmt.Errorf("step %q failed", x.g.ids[i]))
	}
}

// emit stamps e with its wall time, the execution's start plus its offset,
// and reports it to every observer.
func (x *execution) emit(e Event) {
	if len(x.observers) == 0 {
		return
	}
	e.Time = x.startedAt.Add(e.Offset)
	for _, o := range x.observers {
		o.OnEvent(e)
	}
}

// result assembles the Result once every goroutine has reported.
func (x *execution) result() *Result {
	g := x.g
	n := len(x.steps)
	wall := x.offset()
	res := &Result{StartedAt: x.startedAt, Wall: wall, Steps: make([]StepResult, 0, n)}

	// Started steps in start order. They were launched in seq order, which
	// is nearly start order, so the sort has little to do.
	order := make([]int32, 0, n)
	durations := make([]time.Duration, n)
	ran := make([]bool, n)
	for _, i := range x.dispatched {
		if nd := &x.nodes[i]; nd.attempts > 0 {
			order = append(order, i)
			durations[i] = nd.end - nd.start
			ran[i] = true
		}
	}
	slices.SortFunc(order, func(a, b int32) int {
		na, nb := &x.nodes[a], &x.nodes[b]
		if na.start != nb.start {
			return cmp.Compare(na.start, nb.start)
		}
		return cmp.Compare(na.seq, nb.seq)
	})
	for _, i := range g.byID {
		if !ran[i] {
			order = append(order, i)
		}
	}

	depCount := 0
	for _, ids := range g.depIDs {
		depCount += len(ids)
	}
	depStore := make([]string, 0, depCount)
	for _, i := range order {
		nd := &x.nodes[i]
		from := len(depStore)
		depStore = append(depStore, g.depIDs[i]...)
		res.Steps = append(res.Steps, StepResult{
			ID:           x.g.ids[i],
			Deps:         depStore[from:len(depStore):len(depStore)],
			Start:        nd.start,
			Duration:     nd.end - nd.start,
			Attempts:     nd.attempts,
			Outcome:      nd.outcome,
			Err:          nd.stepErr(),
			AttemptSpans: nd.spans,
			Undo:         nd.undo,
		})
	}
	res.CriticalPath, res.CriticalPathDuration = g.criticalPath(durations, ran)
	return res
}

func (nd *node) stepErr() error {
	if nd.outcome == OutcomeUndoFailed {
		return nd.undoErr
	}
	return nd.err
}

// stepError builds the error of an incomplete launch.
func (x *execution) stepError(res *Result, undoErrs []*UndoError) error {
	if f := x.firstFailure.Load(); f >= 0 {
		nd := &x.nodes[f]
		return &StepError{Step: x.g.ids[f], Attempts: nd.attempts, Err: nd.err, UndoErrors: undoErrs}
	}
	e := &StepError{Cancelled: true, Err: context.Cause(x.parent), UndoErrors: undoErrs}
	if e.Err == nil {
		// Unreachable in practice: without a failure only the caller's
		// cancellation stops a launch.
		e.Err = context.Canceled
	}
	// res.Steps lists started steps in start order.
	for _, s := range res.Steps {
		if s.Outcome == OutcomeCancelled {
			e.Step, e.Attempts = s.ID, s.Attempts
			break
		}
	}
	return e
}
