package dag_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
)

func always(error) bool { return true }

func TestRetryPolicyDelay(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		policy  dag.RetryPolicy
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{"first retry waits the initial delay", dag.RetryPolicy{InitialDelay: 100 * ms, Multiplier: 2}, 1, 0.5, 100 * ms},
		{"doubles", dag.RetryPolicy{InitialDelay: 100 * ms, Multiplier: 2}, 3, 0.5, 400 * ms},
		{"multiplier 1.5", dag.RetryPolicy{InitialDelay: 100 * ms, Multiplier: 1.5}, 3, 0.5, 225 * ms},
		{"capped by MaxDelay", dag.RetryPolicy{InitialDelay: 100 * ms, Multiplier: 2, MaxDelay: 300 * ms}, 3, 0.5, 300 * ms},
		{"zero multiplier is constant", dag.RetryPolicy{InitialDelay: 100 * ms}, 5, 0.5, 100 * ms},
		{"lowest jitter", dag.RetryPolicy{InitialDelay: 100 * ms, Jitter: 0.2}, 1, 0, 80 * ms},
		{"middle jitter", dag.RetryPolicy{InitialDelay: 100 * ms, Jitter: 0.2}, 1, 0.5, 100 * ms},
		{"jitter applies after the cap", dag.RetryPolicy{InitialDelay: 100 * ms, Multiplier: 10, MaxDelay: 200 * ms, Jitter: 0.5}, 4, 0.75, 250 * ms},
		{"no initial delay", dag.RetryPolicy{Multiplier: 2}, 3, 0.5, 0},
		{"saturates instead of overflowing", dag.RetryPolicy{InitialDelay: time.Hour, Multiplier: 1e6}, 40, 0.5, time.Duration(1<<63 - 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.policy.Delay(tt.attempt, tt.rnd))
		})
	}
}

func TestRetryPolicyJitterStaysInBounds(t *testing.T) {
	p := dag.RetryPolicy{InitialDelay: time.Second, Multiplier: 2, MaxDelay: 5 * time.Second, Jitter: 0.3}
	rnd := rand.New(rand.NewPCG(1, 2))
	for attempt := 1; attempt <= 6; attempt++ {
		base := min(time.Second<<(attempt-1), 5*time.Second)
		lo, hi := time.Duration(float64(base)*0.7), time.Duration(float64(base)*1.3)
		for range 1000 {
			d := p.Delay(attempt, rnd.Float64())
			require.GreaterOrEqual(t, d, lo)
			require.LessOrEqual(t, d, hi)
		}
	}
}

func TestRetryFollowsTheExactBackoffSequence(t *testing.T) {
	clock := dagtest.NewFakeClock(time.Unix(0, 0))
	log := &dagtest.EventLog{}
	flaky := &dagtest.FakeStep{Name: "pull", FailUntil: 5, Policy: &dag.RetryPolicy{
		MaxAttempts: 6, InitialDelay: 100 * time.Millisecond, Multiplier: 2, MaxDelay: time.Second, Retryable: always,
	}}
	g := mustGraph(t, flaky)
	res, err := execute(t, context.Background(), g, dag.Options{Clock: clock, Observers: []dag.Observer{log}})
	require.NoError(t, err)

	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms}
	assert.Equal(t, want, clock.Sleeps())
	assert.Equal(t, 6, flaky.Attempts())

	r, _ := res.Step("pull")
	assert.Equal(t, dag.OutcomeOK, r.Outcome)
	assert.Equal(t, 6, r.Attempts)
	require.Len(t, r.AttemptSpans, 6)
	for i, span := range r.AttemptSpans[:5] {
		assert.Contains(t, span.Err, "pull failed on attempt")
		// Under the fake clock each attempt starts after the backoff sum.
		assert.Equal(t, sum(want[:i+1]), r.AttemptSpans[i+1].Start)
	}
	assert.Empty(t, r.AttemptSpans[5].Err)
	assert.Equal(t, sum(want), r.Duration, "duration includes backoff")

	retries := log.Of(dag.EventRetrying, "pull")
	require.Len(t, retries, 5)
	for i, e := range retries {
		assert.Equal(t, i+1, e.Attempt)
		assert.Equal(t, want[i], e.Delay)
	}
	assert.Len(t, log.Of(dag.EventStarted, "pull"), 6)
}

func sum(ds []time.Duration) time.Duration {
	var total time.Duration
	for _, d := range ds {
		total += d
	}
	return total
}

func TestRetryJitterUsesOptionsRand(t *testing.T) {
	clock := dagtest.NewFakeClock(time.Unix(0, 0))
	draws := []float64{0, 0.5, 0.999999}
	next := 0
	fixed := func() float64 { v := draws[next%len(draws)]; next++; return v }
	s := &dagtest.FakeStep{Name: "s", FailUntil: 3, Policy: &dag.RetryPolicy{
		MaxAttempts: 4, InitialDelay: time.Second, Multiplier: 1, Jitter: 0.5, Retryable: always,
	}}
	_, err := execute(t, context.Background(), mustGraph(t, s), dag.Options{Clock: clock, Rand: fixed})
	require.NoError(t, err)
	sleeps := clock.Sleeps()
	require.Len(t, sleeps, 3)
	assert.Equal(t, 500*time.Millisecond, sleeps[0])
	assert.Equal(t, time.Second, sleeps[1])
	assert.InDelta(t, float64(1500*time.Millisecond), float64(sleeps[2]), float64(time.Millisecond))
}

func TestRetriesExhausted(t *testing.T) {
	clock := dagtest.NewFakeClock(time.Unix(0, 0))
	cause := errors.New("connection refused")
	s := &dagtest.FakeStep{Name: "boot", FailAlways: true, Err: cause, Policy: &dag.RetryPolicy{
		MaxAttempts: 3, InitialDelay: time.Second, Multiplier: 3, Retryable: always,
	}}
	res, err := execute(t, context.Background(), mustGraph(t, s), dag.Options{Clock: clock})
	require.Error(t, err)
	assert.Equal(t, `step "boot" failed after 3 attempts: connection refused`, err.Error())
	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, 3, serr.Attempts)
	assert.Equal(t, []time.Duration{time.Second, 3 * time.Second}, clock.Sleeps(), "no sleep after the last attempt")
	r, _ := res.Step("boot")
	assert.Equal(t, dag.OutcomeFailed, r.Outcome)
	assert.ErrorIs(t, r.Err, cause)
}

func TestNonRetryableErrorIsNotRetried(t *testing.T) {
	clock := dagtest.NewFakeClock(time.Unix(0, 0))
	permanent := errors.New("manifest invalid")
	s := &dagtest.FakeStep{Name: "s", FailAlways: true, Err: permanent, Policy: &dag.RetryPolicy{
		MaxAttempts: 5, InitialDelay: time.Second,
		Retryable: func(err error) bool { return !errors.Is(err, permanent) },
	}}
	_, err := execute(t, context.Background(), mustGraph(t, s), dag.Options{Clock: clock})
	require.ErrorIs(t, err, permanent)
	assert.Equal(t, 1, s.Attempts())
	assert.Empty(t, clock.Sleeps())

	// A nil Retryable retries nothing either.
	s2 := &dagtest.FakeStep{Name: "s2", FailAlways: true, Policy: &dag.RetryPolicy{MaxAttempts: 5}}
	_, err = execute(t, context.Background(), mustGraph(t, s2), dag.Options{Clock: clock})
	require.Error(t, err)
	assert.Equal(t, 1, s2.Attempts())
}

func TestCancellationInterruptsBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel as soon as the hour-long backoff is announced; the real clock
	// must wake up at once.
	onRetry := dag.ObserverFunc(func(e dag.Event) {
		if e.Kind == dag.EventRetrying {
			cancel()
		}
	})
	s := &dagtest.FakeStep{Name: "pull", FailAlways: true, Policy: &dag.RetryPolicy{
		MaxAttempts: 3, InitialDelay: time.Hour, Retryable: always,
	}}
	start := time.Now()
	res, err := execute(t, ctx, mustGraph(t, s), dag.Options{Observers: []dag.Observer{onRetry}})
	require.ErrorIs(t, err, dag.ErrCancelled)
	assert.Less(t, time.Since(start), testTimeout/2)
	assert.Equal(t, 1, s.Attempts(), "never retried after cancellation")
	r, _ := res.Step("pull")
	assert.Equal(t, dag.OutcomeCancelled, r.Outcome)
	assert.ErrorIs(t, r.Err, context.Canceled)
	assert.Contains(t, r.Err.Error(), "pull failed on attempt 1", "the failed attempt's error is kept")
}

func TestSiblingFailureInterruptsBackoff(t *testing.T) {
	retrying, announceRetry := closeOnce()
	onRetry := dag.ObserverFunc(func(e dag.Event) {
		if e.Kind == dag.EventRetrying {
			announceRetry()
		}
	})
	waiter := &dagtest.FakeStep{Name: "waiter", FailAlways: true, Policy: &dag.RetryPolicy{
		MaxAttempts: 3, InitialDelay: time.Hour, Retryable: always,
	}}
	breaker := &dagtest.FakeStep{Name: "breaker", FailAlways: true,
		Hook: func(ctx context.Context, _ int) error { return waitClosed(ctx, retrying, "waiter to back off") }}
	res, err := execute(t, context.Background(), mustGraph(t, waiter, breaker), dag.Options{Observers: []dag.Observer{onRetry}})
	var serr *dag.StepError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, "breaker", serr.Step)
	assert.Equal(t, dag.OutcomeCancelled, outcomes(res)["waiter"])
	assert.Equal(t, 1, waiter.Attempts())
}

func TestAttemptTimeout(t *testing.T) {
	s := &dagtest.FakeStep{Name: "wait_ready", Block: true, AttemptTimeout: 30 * time.Millisecond}
	res, err := execute(t, context.Background(), mustGraph(t, s), dag.Options{})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	var terr *dag.TimeoutError
	require.ErrorAs(t, err, &terr)
	assert.Equal(t, 30*time.Millisecond, terr.After)
	assert.Equal(t, `step "wait_ready" failed after 1 attempt: timed out after 30ms: context deadline exceeded`, err.Error())
	r, _ := res.Step("wait_ready")
	assert.Equal(t, dag.OutcomeFailed, r.Outcome, "a timeout is a failure, not a cancellation")
	assert.GreaterOrEqual(t, r.Duration, 30*time.Millisecond)
}

func TestAttemptTimeoutIsRetriedOnlyIfThePredicateSaysSo(t *testing.T) {
	clock := dagtest.NewFakeClock(time.Unix(0, 0))
	retriesTimeouts := &dagtest.FakeStep{Name: "a", Block: true, AttemptTimeout: 5 * time.Millisecond, Policy: &dag.RetryPolicy{
		MaxAttempts: 3, InitialDelay: time.Second,
		Retryable: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
	}}
	_, err := execute(t, context.Background(), mustGraph(t, retriesTimeouts), dag.Options{Clock: clock})
	require.Error(t, err)
	assert.Equal(t, 3, retriesTimeouts.Attempts())
	assert.Contains(t, err.Error(), "failed after 3 attempts: timed out after 5ms")

	other := errors.New("other")
	noTimeoutRetry := &dagtest.FakeStep{Name: "b", Block: true, AttemptTimeout: 5 * time.Millisecond, Policy: &dag.RetryPolicy{
		MaxAttempts: 3, InitialDelay: time.Second,
		Retryable: func(err error) bool { return errors.Is(err, other) },
	}}
	_, err = execute(t, context.Background(), mustGraph(t, noTimeoutRetry), dag.Options{Clock: clock})
	require.Error(t, err)
	assert.Equal(t, 1, noTimeoutRetry.Attempts())
}

func TestFastAttemptIsNotATimeout(t *testing.T) {
	s := &dagtest.FakeStep{Name: "quick", AttemptTimeout: time.Minute, FailAlways: true, Err: errors.New("plain")}
	_, err := execute(t, context.Background(), mustGraph(t, s), dag.Options{})
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, `step "quick" failed after 1 attempt: plain`, err.Error())
}
