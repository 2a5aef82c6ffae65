package dagtest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
)

// FakeStep is a configurable step for testing the executor. Every attempt
// does, in order: call Hook; wait for Wait to close; sleep Delay; block until
// its context is done if Block; panic with Panic if set; fail if the
// attempt is one of the failing ones. Each phase that waits honours ctx and
// returns ctx.Err() when it is done. Use a *FakeStep; it is safe for
// concurrent use.
//
// FakeStep implements dag.Undoer, dag.Retrier and dag.Timeouter; wrap it in
// Plain to hide them.
type FakeStep struct {
	Name      string
	DependsOn []string

	// Hook, when set, runs first in every attempt; a non-nil error ends the
	// attempt with it.
	Hook func(ctx context.Context, attempt int) error
	// Wait, when set, must be closed before the attempt goes on.
	Wait <-chan struct{}
	// Delay is how long each attempt takes.
	Delay time.Duration
	// Block makes each attempt wait until its context is done.
	Block bool
	// Panic, when non-nil, is passed to panic by every attempt.
	Panic any
	// FailUntil makes attempts 1..FailUntil fail; FailAlways makes every
	// attempt fail. They fail with Err, or "<Name> failed on attempt <n>".
	FailUntil  int
	FailAlways bool
	Err        error

	Policy *dag.RetryPolicy
	// AttemptTimeout is what Timeout returns.
	AttemptTimeout time.Duration

	// UndoHook, when set, runs first in Undo; UndoWait is waited on next;
	// then Undo fails with UndoErr if set.
	UndoHook func(ctx context.Context) error
	UndoWait <-chan struct{}
	UndoErr  error

	// Rec, when set, receives every start, finish and undo.
	Rec *Recorder

	attempts atomic.Int32
	undos    atomic.Int32
}

var (
	_ dag.Step      = (*FakeStep)(nil)
	_ dag.Undoer    = (*FakeStep)(nil)
	_ dag.Retrier   = (*FakeStep)(nil)
	_ dag.Timeouter = (*FakeStep)(nil)
)

func (s *FakeStep) ID() string                    { return s.Name }
func (s *FakeStep) Deps() []string                { return s.DependsOn }
func (s *FakeStep) RetryPolicy() *dag.RetryPolicy { return s.Policy }
func (s *FakeStep) Timeout() time.Duration        { return s.AttemptTimeout }

// Attempts returns how many times Run was called.
func (s *FakeStep) Attempts() int { return int(s.attempts.Load()) }

// Undos returns how many times Undo was called.
func (s *FakeStep) Undos() int { return int(s.undos.Load()) }

func (s *FakeStep) Run(ctx context.Context) (err error) {
	attempt := int(s.attempts.Add(1))
	s.Rec.record(KindStart, s.Name, attempt, nil)
	defer func() { s.Rec.record(KindFinish, s.Name, attempt, err) }()

	if s.Hook != nil {
		if err := s.Hook(ctx, attempt); err != nil {
			return err
		}
	}
	if s.Wait != nil {
		select {
		case <-s.Wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.Delay > 0 {
		t := time.NewTimer(s.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.Block {
		<-ctx.Done()
		return ctx.Err()
	}
	if s.Panic != nil {
		panic(s.Panic)
	}
	if s.FailAlways || attempt <= s.FailUntil {
		if s.Err != nil {
			return s.Err
		}
		return fmt.Errorf("%s failed on attempt %d", s.Name, attempt)
	}
	return nil
}

func (s *FakeStep) Undo(ctx context.Context) (err error) {
	s.undos.Add(1)
	s.Rec.recordUndo(KindUndoStart, s.Name, ctx, nil)
	defer func() { s.Rec.recordUndo(KindUndoFinish, s.Name, ctx, err) }()
	if s.UndoHook != nil {
		if err := s.UndoHook(ctx); err != nil {
			return err
		}
	}
	if s.UndoWait != nil {
		select {
		case <-s.UndoWait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.UndoErr
}

// Plain hides every optional interface of s: the executor sees only a
// dag.Step.
func Plain(s dag.Step) dag.Step { return plainStep{s} }

type plainStep struct{ s dag.Step }

func (p plainStep) ID() string                    { return p.s.ID() }
func (p plainStep) Deps() []string                { return p.s.Deps() }
func (p plainStep) Run(ctx context.Context) error { return p.s.Run(ctx) }

// ErrInjected is the error the steps injected by FailStep return.
var ErrInjected = errors.New("injected failure")

// FailStep returns an Options.Wrap function that replaces the step with the
// given ID by a FakeStep failing every attempt with ErrInjected (wrapped
// with the ID), and leaves the other steps untouched.
func FailStep(id string) func(dag.Step) dag.Step {
	return func(s dag.Step) dag.Step {
		if s.ID() != id {
			return s
		}
		return &FakeStep{Name: s.ID(), DependsOn: s.Deps(), FailAlways: true, Err: fmt.Errorf("%s: %w", id, ErrInjected)}
	}
}
