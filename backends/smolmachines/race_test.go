package smolmachines

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
)

func TestIsWarmupRace(t *testing.T) {
	exit := func(code int) error {
		return &backends.ExitError{Argv: []string{"true"}, Result: backends.ExecResult{ExitCode: code}}
	}
	cli := func(sub string, code int, stderr string) error {
		return &CLIError{Subcommand: sub, Machine: "m", ExitCode: code, Stderr: stderr}
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"guest SIGKILL", exit(137), true},
		{"guest SIGKILL wrapped", fmt.Errorf("step x: %w", exit(137)), true},
		{"guest exit 1", exit(1), false},
		{"guest SIGTERM", exit(143), false},
		{"exec timeout", exit(124), false},
		{"guest exit 127", exit(127), false},
		{"exec not running", cli("exec", 1, "Error: machine \"m\" is not running\n"), true},
		{"cp not running", cli("cp", 1, "Error: machine \"m\" is not running\n"), true},
		{"cp killed", cli("cp", 137, ""), true},
		{"exec not running wrapped", fmt.Errorf("x: %w", cli("exec", 1, "Error: machine \"m\" is not running")), true},
		{"exec not found", cli("exec", 1, "Error: machine \"m\" not found\n"), false},
		{"exec other smolvm error", cli("exec", 1, "Error: guest agent unreachable\n"), false},
		{"start not running", cli("start", 1, "Error: machine \"m\" is not running\n"), false},
		{"create exit 137", cli("create", 137, ""), false},
		{"cp exit 1", cli("cp", 1, "Error: no such file\n"), false},
		{"context cancelled", context.Canceled, false},
		{"plain error mentioning not running", errors.New("machine is not running"), false},
		{"plain error mentioning 137", errors.New("exit 137"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, IsWarmupRace(tc.err))
		})
	}
}

func TestWarmupRetryPolicy(t *testing.T) {
	p := WarmupRetryPolicy()
	assert.Equal(t, 6, p.Attempts())
	assert.NotNil(t, p.Retryable)
	assert.True(t, p.Retryable(&backends.ExitError{Result: backends.ExecResult{ExitCode: 137}}))
	assert.False(t, p.Retryable(&backends.ExitError{Result: backends.ExecResult{ExitCode: 1}}))

	// Exponential, capped, jittered by at most 20% either way.
	var total time.Duration
	for attempt, want := range map[int]time.Duration{1: 250 * time.Millisecond, 2: 500 * time.Millisecond, 3: time.Second, 4: 2 * time.Second, 5: 4 * time.Second, 9: 4 * time.Second} {
		assert.Equal(t, want, p.Delay(attempt, 0.5), "attempt %d", attempt)
		assert.InDelta(t, float64(want)*0.8, float64(p.Delay(attempt, 0)), 1, "attempt %d", attempt)
		assert.InDelta(t, float64(want)*1.2, float64(p.Delay(attempt, 1)), 1, "attempt %d", attempt)
	}
	for attempt := 1; attempt < p.Attempts(); attempt++ {
		total += p.Delay(attempt, 1)
	}
	assert.Less(t, total, 10*time.Second, "worst-case backoff of the whole budget")

	// Each call returns its own policy, so a caller may tune it.
	assert.NotSame(t, p, WarmupRetryPolicy())
	var _ *dag.RetryPolicy = p
}
