package dag

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrCancelled is matched by errors.Is on the error Execute returns when the
// caller's context was cancelled (or hit its deadline) before every step
// succeeded. That error is a *StepError with Cancelled set; it also matches
// the context's own error (context.Canceled or context.DeadlineExceeded).
var ErrCancelled = errors.New("launch cancelled")

// StepError is the error Execute returns when a launch does not complete.
//
// When a step failed, Step names the first step that failed for good,
// Attempts says how many attempts it made and Err is its last error.
//
// When the caller's context was cancelled instead, Cancelled is true, Step
// names the step that was running (the earliest-started one that was
// interrupted; empty when none was running) and Err is the context's cause.
//
// UndoErrors lists the rollback failures, dependents first. They are
// reported beside the cause and never replace it: Unwrap returns Err only.
type StepError struct {
	Step       string
	Attempts   int
	Err        error
	Cancelled  bool
	UndoErrors []*UndoError
}

func (e *StepError) Error() string {
	var b strings.Builder
	switch {
	case e.Cancelled && e.Step != "":
		fmt.Fprintf(&b, "launch cancelled while step %q was running: %v", e.Step, e.Err)
	case e.Cancelled:
		fmt.Fprintf(&b, "launch cancelled: %v", e.Err)
	default:
		plural := "s"
		if e.Attempts == 1 {
			plural = ""
		}
		fmt.Fprintf(&b, "step %q failed after %d attempt%s: %v", e.Step, e.Attempts, plural, e.Err)
	}
	for _, u := range e.UndoErrors {
		fmt.Fprintf(&b, "; rollback: undo %q: %v", u.Step, u.Err)
	}
	return b.String()
}

// Unwrap returns the cause, so errors.Is and errors.As reach the step's own
// error (or, for a cancelled launch, the context's).
func (e *StepError) Unwrap() error { return e.Err }

// Is makes a cancelled launch match ErrCancelled.
func (e *StepError) Is(target error) bool { return target == ErrCancelled && e.Cancelled }

// UndoError is one failed rollback of one step.
type UndoError struct {
	Step string
	Err  error
}

func (e *UndoError) Error() string { return fmt.Sprintf("undo %q: %v", e.Step, e.Err) }

func (e *UndoError) Unwrap() error { return e.Err }

// PanicError is what a panicking Run or Undo turns into. The enclosing
// StepError or UndoError names the step.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the panicking goroutine's stack trace.
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// TimeoutError is an attempt that overran its Timeouter bound. It matches
// context.DeadlineExceeded under errors.Is, whatever the step returned, so a
// Retryable predicate can test for it.
type TimeoutError struct {
	After time.Duration
	// Err is what the step returned after its context expired.
	Err error
}

func (e *TimeoutError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("timed out after %s: %v", e.After, context.DeadlineExceeded)
	}
	return fmt.Sprintf("timed out after %s: %v", e.After, e.Err)
}

func (e *TimeoutError) Unwrap() []error {
	if e.Err == nil {
		return []error{context.DeadlineExceeded}
	}
	return []error{e.Err, context.DeadlineExceeded}
}
