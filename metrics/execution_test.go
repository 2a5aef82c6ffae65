package metrics

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/bot-bottle/bot-bottle/dag"
)

// interleaved is two executions of the same step running at once, as in
// `bottle bench --parallel`: A retries (attempt 1 at 0 ms, attempt 2 from
// 4 ms to 10 ms), B runs once from 2 ms to 3 ms on its own clock.
func interleaved() (a, b []dag.Event) {
	ev := func(kind dag.EventKind, offset, attempt, dur int) dag.Event {
		return dag.Event{Kind: kind, Step: "boot", Offset: ms(offset), Attempt: attempt, Duration: ms(dur)}
	}
	a = []dag.Event{ev(dag.EventStarted, 0, 1, 0), ev(dag.EventRetrying, 1, 1, 1), ev(dag.EventStarted, 4, 2, 0), ev(dag.EventSucceeded, 10, 2, 6)}
	b = []dag.Event{ev(dag.EventStarted, 2, 1, 0), ev(dag.EventSucceeded, 3, 1, 1)}
	return a, b
}

// replay delivers the events in the order A0, A1, B0, B1, A2, A3.
func replay(a, b []dag.Event, obsA, obsB dag.Observer) {
	obsA.OnEvent(a[0])
	obsA.OnEvent(a[1])
	obsB.OnEvent(b[0])
	obsB.OnEvent(b[1])
	obsA.OnEvent(a[2])
	obsA.OnEvent(a[3])
}

func TestExecutionsRunningAtOnceKeepTheirOwnStarts(t *testing.T) {
	r := New("docker")
	a, b := interleaved()
	replay(a, b, r.Execution(), r.Execution())
	h := histogram(t, r.Gatherer(), StepDurationName, map[string]string{"step": "boot", "backend": "docker", "outcome": "ok"})
	assert.Equal(t, uint64(2), h.GetSampleCount())
	// 10 ms for A (both attempts and the backoff) plus 1 ms for B.
	assert.InDelta(t, 0.011, h.GetSampleSum(), 1e-9)
}

// The negative control: the same events through one shared OnEvent mix the
// two executions up, which is why concurrent launches need Execution.
func TestSharedOnEventMixesConcurrentExecutions(t *testing.T) {
	r := New("docker")
	a, b := interleaved()
	replay(a, b, r, r)
	h := histogram(t, r.Gatherer(), StepDurationName, map[string]string{"step": "boot", "backend": "docker", "outcome": "ok"})
	// B's start replaces A's first one, and B's end deletes it: A is
	// measured from its second attempt only (6 ms).
	assert.InDelta(t, 0.007, h.GetSampleSum(), 1e-9)
}
