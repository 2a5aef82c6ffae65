// Package dag schedules a graph of typed steps: each step starts the moment
// its last dependency succeeds, independent branches run concurrently, a
// failure cancels what is running and rolls back what completed.
//
// The package knows nothing about bottles, containers or VMs. A step is any
// value implementing Step; optional abilities are the small interfaces
// Undoer, Retrier and Timeouter, which the executor type-asserts.
package dag

import (
	"context"
	"time"
)

// Step is one node of the graph.
//
// ID must be stable and unique within a graph: it names the step in errors,
// results, events, metrics labels and DOT output. Deps lists the IDs of the
// steps that must succeed before Run is called. Run must honour ctx: when a
// sibling fails, ctx is cancelled and Run should return promptly.
type Step interface {
	ID() string
	Deps() []string
	Run(ctx context.Context) error
}

// Undoer is implemented by steps that acquire something which must be
// released when the launch fails after the step succeeded. Undo runs under a
// context that the caller's cancellation (Ctrl-C) cannot cancel, bounded by
// Options.UndoTimeout. Undo must be idempotent.
//
// Undo is also called for a step that failed or was cancelled after it
// started, because an interrupted Run may have acquired part of what it
// meant to (a container created but never started). Undo must therefore be
// safe when Run half-ran or did nothing at all: release what exists, treat
// "not found" as done, and never assume Run succeeded. Undo is called at
// most once per execution, after the undos of all the step's dependents
// have finished, and never for a step that did not start.
type Undoer interface {
	Undo(ctx context.Context) error
}

// Retrier is implemented by steps that may be retried. A nil policy means a
// single attempt.
type Retrier interface {
	RetryPolicy() *RetryPolicy
}

// Timeouter is implemented by steps that bound each attempt. Zero means no
// per-attempt bound.
type Timeouter interface {
	Timeout() time.Duration
}

// RetryPolicy says how often and how soon a failed attempt is tried again.
//
// The delay before attempt n+1 (n >= 1) is
// min(InitialDelay * Multiplier^(n-1), MaxDelay), then scaled by a random
// factor in [1-Jitter, 1+Jitter]. Only errors for which Retryable returns
// true are retried; a nil Retryable retries nothing.
type RetryPolicy struct {
	MaxAttempts  int           `json:"max_attempts"`
	InitialDelay time.Duration `json:"-"`
	Multiplier   float64       `json:"multiplier"`
	MaxDelay     time.Duration `json:"-"`
	// Jitter is a fraction in [0, 1].
	Jitter    float64          `json:"jitter"`
	Retryable func(error) bool `json:"-"`
}
