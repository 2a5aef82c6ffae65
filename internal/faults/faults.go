// Package faults injects failures into launch steps, for tests: a step
// chosen by ID fails with an error, panics, hangs until its per-attempt
// timeout ends it, or is slowed down, at a chosen attempt. It works through
// the executor's Wrap hook (launcher.Options.Wrap), so the launch code under
// test is the real one; the wrapper forwards the wrapped step's Undo,
// RetryPolicy and Timeout so rollback and retries behave as without it.
//
// The bottle binary reads a fault from the environment (EnvVar) only when
// built with the faultinject build tag; release builds do not link this
// package.
package faults

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
)

// EnvVar holds the faults a faultinject build of the bottle binary
// injects: comma-separated specs of the form step:kind[=duration][:attempt]
// (see Parse).
const EnvVar = "BOT_BOTTLE_FAULT"

// Kind is what an injected fault does.
type Kind string

const (
	// KindError makes the attempt return an *Error at once.
	KindError Kind = "error"
	// KindPanic makes the attempt panic with an *Error.
	KindPanic Kind = "panic"
	// KindHang makes the attempt block until its context ends, with the
	// step's per-attempt timeout forced down to the fault's Duration, so
	// the executor's timeout is what ends it.
	KindHang Kind = "hang"
	// KindSlow delays the attempt by Duration, then runs the real step:
	// a slow launch that still succeeds.
	KindSlow Kind = "slow"
)

// Default durations.
const (
	DefaultHangTimeout = time.Second
	DefaultSlowDelay   = 3 * time.Second
)

// ErrInjected is matched by errors.Is on every error a fault produces.
var ErrInjected = errors.New("injected fault")

// Fault says which step fails, how, and when.
type Fault struct {
	Step string
	Kind Kind
	// Attempt is the 1-based attempt that fails; 0 means the first. The
	// attempts before it run the real step. Under KindHang the forced
	// timeout bounds those earlier attempts too (the executor reads a
	// step's timeout once), so choose a Duration that fits the step.
	Attempt int
	// Duration is the forced timeout of KindHang (DefaultHangTimeout when
	// zero) or the delay of KindSlow (DefaultSlowDelay when zero).
	Duration time.Duration
}

func (f Fault) attempt() int {
	if f.Attempt < 1 {
		return 1
	}
	return f.Attempt
}

func (f Fault) duration() time.Duration {
	switch {
	case f.Duration > 0:
		return f.Duration
	case f.Kind == KindSlow:
		return DefaultSlowDelay
	}
	return DefaultHangTimeout
}

// String renders f in the form Parse reads.
func (f Fault) String() string {
	s := f.Step + ":" + string(f.Kind)
	if f.Duration > 0 {
		s += "=" + f.Duration.String()
	}
	if f.Attempt > 1 {
		s += ":" + strconv.Itoa(f.Attempt)
	}
	return s
}

// Error is what a fault fails with (and, for KindPanic, the panic value).
type Error struct {
	Step    string
	Kind    Kind
	Attempt int
	// Err is the context's error that ended a hang.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("injected %s in step %q, attempt %d", e.Kind, e.Step, e.Attempt)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes every fault match ErrInjected.
func (e *Error) Is(target error) bool { return target == ErrInjected }

// Unwrap returns the context's error of a hang.
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns s with the fault injected when s is the fault's step, and s
// itself otherwise. Each Wrap call counts attempts afresh.
func (f Fault) Wrap(s dag.Step) dag.Step {
	if s.ID() != f.Step {
		return s
	}
	return &step{Step: s, f: f}
}

// Wrapper returns a Wrap function injecting every fault given.
func Wrapper(fs ...Fault) func(dag.Step) dag.Step {
	return func(s dag.Step) dag.Step {
		for _, f := range fs {
			s = f.Wrap(s)
		}
		return s
	}
}

// step is a step with a fault. It forwards every optional ability of the
// wrapped step.
type step struct {
	dag.Step
	f        Fault
	attempts atomic.Int32
}

var (
	_ dag.Undoer    = (*step)(nil)
	_ dag.Retrier   = (*step)(nil)
	_ dag.Timeouter = (*step)(nil)
)

func (s *step) Run(ctx context.Context) error {
	n := int(s.attempts.Add(1))
	if n != s.f.attempt() {
		return s.Step.Run(ctx)
	}
	e := &Error{Step: s.f.Step, Kind: s.f.Kind, Attempt: n}
	switch s.f.Kind {
	case KindError:
		return e
	case KindPanic:
		panic(e)
	case KindHang:
		<-ctx.Done()
		e.Err = ctx.Err()
		return e
	case KindSlow:
		t := time.NewTimer(s.f.duration())
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			e.Err = ctx.Err()
			return e
		}
		return s.Step.Run(ctx)
	}
	return fmt.Errorf("faults: unknown kind %q", s.f.Kind)
}

// Undo forwards to the wrapped step: a faulted step may hold what an
// earlier attempt acquired.
func (s *step) Undo(ctx context.Context) error {
	if u, ok := s.Step.(dag.Undoer); ok {
		return u.Undo(ctx)
	}
	return nil
}

func (s *step) RetryPolicy() *dag.RetryPolicy {
	if r, ok := s.Step.(dag.Retrier); ok {
		return r.RetryPolicy()
	}
	return nil
}

// Timeout is the wrapped step's, forced down to the fault's duration for
// a hang; a slow step gets its delay on top.
func (s *step) Timeout() time.Duration {
	var t time.Duration
	if to, ok := s.Step.(dag.Timeouter); ok {
		t = to.Timeout()
	}
	switch s.f.Kind {
	case KindHang:
		if d := s.f.duration(); t == 0 || d < t {
			return d
		}
	case KindSlow:
		if t > 0 {
			return t + s.f.duration()
		}
	}
	return t
}

// Unwrap returns the wrapped step.
func (s *step) Unwrap() dag.Step { return s.Step }

// Parse reads comma-separated faults of the form
//
//	step:kind[=duration][:attempt]
//
// Step IDs may themselves hold colons ("sidecar:egress:hang=2s:1"), so the
// spec is read from the right: an optional attempt number, then the kind,
// and the rest is the step.
func Parse(spec string) ([]Fault, error) {
	var out []Fault
	for _, one := range strings.Split(spec, ",") {
		one = strings.TrimSpace(one)
		if one == "" {
			continue
		}
		f, err := parseOne(one)
		if err != nil {
			return nil, fmt.Errorf("fault %q: %w", one, err)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, errors.New("no fault given")
	}
	return out, nil
}

func parseOne(s string) (Fault, error) {
	parts := strings.Split(s, ":")
	var f Fault
	if n, err := strconv.Atoi(parts[len(parts)-1]); err == nil {
		if n < 1 {
			return f, fmt.Errorf("attempt %d: want 1 or more", n)
		}
		f.Attempt = n
		parts = parts[:len(parts)-1]
	}
	if len(parts) < 2 {
		return f, errors.New("want step:kind[=duration][:attempt]")
	}
	kind, dur, hasDur := strings.Cut(parts[len(parts)-1], "=")
	f.Kind = Kind(kind)
	switch f.Kind {
	case KindError, KindPanic:
		if hasDur {
			return f, fmt.Errorf("kind %s takes no duration", kind)
		}
	case KindHang, KindSlow:
		if hasDur {
			d, err := time.ParseDuration(dur)
			if err != nil || d <= 0 {
				return f, fmt.Errorf("duration %q: want a positive Go duration such as 2s", dur)
			}
			f.Duration = d
		}
	default:
		return f, fmt.Errorf("kind %q: want error, panic, hang or slow", kind)
	}
	f.Step = strings.Join(parts[:len(parts)-1], ":")
	if f.Step == "" {
		return f, errors.New("no step")
	}
	return f, nil
}
