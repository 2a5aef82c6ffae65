package smolmachines

import (
	"errors"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
)

// exitSIGKILL is what smolvm reports for a guest process killed by SIGKILL
// (128 + 9).
const exitSIGKILL = 137

// IsWarmupRace reports whether err is smolvm's exec warm-up race: an exec
// or cp issued while the just-started workload is still settling is either
// SIGKILLed (exit 137) or refused with "not running". Exactly those are
// worth retrying; every other failure, including a guest's own non-zero
// exit, is not. A machine that is really stopped also says "not running";
// the retry budget bounds what that costs.
func IsWarmupRace(err error) bool {
	var exitErr *backends.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.Result.ExitCode == exitSIGKILL
	}
	var cliErr *CLIError
	if errors.As(err, &cliErr) {
		if cliErr.Subcommand != "exec" && cliErr.Subcommand != "cp" {
			return false
		}
		return cliErr.ExitCode == exitSIGKILL || cliErr.NotRunning()
	}
	return false
}

// Warm-up retry budget: six attempts with delays of about 0.25, 0.5, 1, 2
// and 4 s between them, so a guest that settles within ~8 s is waited out
// and one that never does fails in bounded time.
const (
	warmupAttempts     = 6
	warmupInitialDelay = 250 * time.Millisecond
	warmupMaxDelay     = 4 * time.Second
)

// WarmupRetryPolicy returns the retry policy for a step whose exec/cp calls
// may hit the warm-up race. The step must be safe to run again from the
// start: a SIGKILLed exec may have done part of its work.
func WarmupRetryPolicy() *dag.RetryPolicy {
	return &dag.RetryPolicy{
		MaxAttempts:  warmupAttempts,
		InitialDelay: warmupInitialDelay,
		Multiplier:   2,
		MaxDelay:     warmupMaxDelay,
		Jitter:       0.2,
		Retryable:    IsWarmupRace,
	}
}
