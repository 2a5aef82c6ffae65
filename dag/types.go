package dag

import (
	"context"
	"time"
)

// Outcome is what finally happened to a step in one execution.
type Outcome string

const (
	OutcomeOK         Outcome = "ok"
	OutcomeFailed     Outcome = "failed"
	OutcomeSkipped    Outcome = "skipped"   // never started: a dependency failed or the run was cancelled first
	OutcomeCancelled  Outcome = "cancelled" // interrupted by another step's failure or by the caller
	OutcomeUndone     Outcome = "undone"    // succeeded, then rolled back
	OutcomeUndoFailed Outcome = "undo_failed"
)

// EventKind names a transition reported to observers.
type EventKind string

const (
	EventStarted    EventKind = "started"   // an attempt began (Attempt is 1-based)
	EventRetrying   EventKind = "retrying"  // an attempt failed and another follows after Delay
	EventSucceeded  EventKind = "succeeded" // the step finished ok
	EventFailed     EventKind = "failed"    // the step failed for good
	EventCancelled  EventKind = "cancelled" // the step was interrupted
	EventSkipped    EventKind = "skipped"   // the step never started
	EventUndoing    EventKind = "undoing"   // rollback of the step began
	EventUndone     EventKind = "undone"    // rollback of the step succeeded
	EventUndoFailed EventKind = "undo_failed"
)

// Event is one timestamped transition of one step.
type Event struct {
	Kind EventKind
	Step string
	// Time is the wall-clock time of the event (from the executor's clock).
	Time time.Time
	// Offset is the time since the execution started (monotonic).
	Offset time.Duration
	// Attempt is the 1-based attempt the event concerns (0 for skipped).
	Attempt int
	// Delay is the backoff before the next attempt (EventRetrying only).
	Delay time.Duration
	// Duration is how long the failed attempt took (EventRetrying), the
	// step took from its first attempt's start, backoff included
	// (EventSucceeded, EventFailed, EventCancelled: equal to
	// StepResult.Duration), or the undo took (EventUndone, EventUndoFailed).
	Duration time.Duration
	Err      error
}

// Observer receives events. OnEvent is called from the executor's
// goroutines, possibly concurrently: implementations must be safe for
// concurrent use and must not block for long. The executor never prints;
// progress displays, metrics and timing files are observers.
type Observer interface {
	OnEvent(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

func (f ObserverFunc) OnEvent(e Event) { f(e) }

// Clock is the executor's source of time. Tests inject a fake one so retry
// backoff runs without sleeping.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, returning ctx.Err() in the
	// latter case.
	Sleep(ctx context.Context, d time.Duration) error
}

// Span is an interval measured from the start of the execution.
type Span struct {
	Start    time.Duration `json:"start_offset_seconds"`
	Duration time.Duration `json:"duration_seconds"`
	Err      string        `json:"error,omitempty"`
}

// StepResult is the record of one step in one execution.
type StepResult struct {
	ID   string
	Deps []string
	// Start is the offset of the first attempt from the execution start;
	// Duration runs from the first attempt's start to the last attempt's end
	// (backoff included). Both zero for skipped steps.
	Start    time.Duration
	Duration time.Duration
	Attempts int
	Outcome  Outcome
	// Err is the final error of a failed, cancelled or undo_failed step.
	Err error
	// AttemptSpans holds one span per attempt, in order.
	AttemptSpans []Span
	// Undo is the rollback span, when the step was undone (or failed to).
	Undo *Span
}

// Result is the record of one execution.
type Result struct {
	StartedAt time.Time
	Wall      time.Duration
	// Steps are in the order they started; never-started steps follow in ID
	// order.
	Steps []StepResult
	// CriticalPath is the longest chain of dependencies weighted by measured
	// durations, first step first; CriticalPathDuration is its total.
	CriticalPath         []string
	CriticalPathDuration time.Duration
}

// Step returns the result of the step with the given id.
func (r *Result) Step(id string) (StepResult, bool) {
	for _, s := range r.Steps {
		if s.ID == id {
			return s, true
		}
	}
	return StepResult{}, false
}

// Options tune one execution.
type Options struct {
	// MaxParallel bounds how many steps run at once; <= 0 means unbounded.
	// 1 reproduces a sequential launch.
	MaxParallel int
	// Clock defaults to the real clock.
	Clock Clock
	// Observers receive every event.
	Observers []Observer
	// UndoTimeout bounds the whole rollback; default 2 minutes.
	UndoTimeout time.Duration
	// Rand supplies jitter in [0,1); defaults to math/rand/v2. The executor
	// serialises its calls, so it need not be safe for concurrent use.
	Rand func() float64
	// Wrap, when set, replaces each step before execution. It exists for
	// fault injection in tests; the wrapper must keep the step's ID and
	// Deps and should forward the optional interfaces it wants kept.
	Wrap func(Step) Step
}
