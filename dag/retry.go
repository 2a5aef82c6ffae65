package dag

import (
	"math"
	"time"
)

// Attempts returns how many attempts the policy allows: MaxAttempts, and at
// least one. A nil policy allows one.
func (p *RetryPolicy) Attempts() int {
	if p == nil || p.MaxAttempts < 1 {
		return 1
	}
	return p.MaxAttempts
}

// Delay returns the backoff after failed attempt number attempt (1-based),
// that is before attempt+1: min(InitialDelay*Multiplier^(attempt-1),
// MaxDelay) scaled by 1-Jitter+2*Jitter*rnd, so an rnd uniform in [0,1)
// gives a factor uniform in [1-Jitter, 1+Jitter). It is pure: the executor
// supplies rnd from Options.Rand.
//
// A Multiplier <= 0 counts as 1 (constant delay), MaxDelay <= 0 as no cap,
// Jitter is clamped to [0,1] and rnd to [0,1]; the result is never negative
// and saturates instead of overflowing.
func (p *RetryPolicy) Delay(attempt int, rnd float64) time.Duration {
	if p == nil || p.InitialDelay <= 0 {
		return 0
	}
	multiplier := p.Multiplier
	if multiplier <= 0 {
		multiplier = 1
	}
	if attempt < 1 {
		attempt = 1
	}
	d := float64(p.InitialDelay) * math.Pow(multiplier, float64(attempt-1))
	if p.MaxDelay > 0 && d > float64(p.MaxDelay) {
		d = float64(p.MaxDelay)
	}
	jitter := min(max(p.Jitter, 0), 1)
	rnd = min(max(rnd, 0), 1)
	d *= 1 - jitter + 2*jitter*rnd
	if d >= math.MaxInt64 || math.IsNaN(d) {
		return math.MaxInt64
	}
	return time.Duration(d)
}

// retryable reports whether err, returned by the given attempt, earns
// another attempt under p.
func (p *RetryPolicy) retryable(attempt int, err error) bool {
	return p != nil && attempt < p.Attempts() && p.Retryable != nil && p.Retryable(err)
}
