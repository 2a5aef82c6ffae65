package metrics

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
)

// scriptedEvents is what the executor reports for a launch with one retry
// (git-gate), one failure (egress), one cancellation (ca) and one skipped
// step (boot).
func scriptedEvents() []dag.Event {
	at := func(kind dag.EventKind, step string, offset, attempt int) dag.Event {
		return dag.Event{Kind: kind, Step: step, Time: fixtureStart.Add(ms(offset)), Offset: ms(offset), Attempt: attempt}
	}
	refused := errors.New("connection refused")
	retry := at(dag.EventRetrying, "sidecar:git-gate", 300, 1)
	retry.Delay, retry.Duration, retry.Err = ms(100), ms(200), refused
	gateOK := at(dag.EventSucceeded, "sidecar:git-gate", 700, 2)
	gateOK.Duration = ms(300)
	imageOK := at(dag.EventSucceeded, "image", 400, 1)
	imageOK.Duration = ms(400)
	egressFail := at(dag.EventFailed, "sidecar:egress", 400, 1)
	egressFail.Duration, egressFail.Err = ms(300), errors.New("exit status 1")
	caCancel := at(dag.EventCancelled, "ca", 450, 1)
	caCancel.Duration, caCancel.Err = ms(50), errors.New("context canceled")
	return []dag.Event{
		at(dag.EventStarted, "image", 0, 1),
		at(dag.EventStarted, "sidecar:git-gate", 100, 1),
		at(dag.EventStarted, "sidecar:egress", 100, 1),
		retry,
		at(dag.EventStarted, "ca", 400, 1),
		at(dag.EventStarted, "sidecar:git-gate", 400, 2),
		imageOK,
		egressFail,
		caCancel,
		gateOK,
		{Kind: dag.EventSkipped, Step: "boot", Time: fixtureStart.Add(ms(700)), Offset: ms(700)},
	}
}

// histogram returns the histogram child of family name whose labels are
// exactly want, failing the test if there is none.
func histogram(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) *dto.Histogram {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if assert.ObjectsAreEqual(want, got) {
				return m.GetHistogram()
			}
		}
	}
	require.Failf(t, "histogram not found", "%s %v", name, want)
	return nil
}

func TestRecorderCountsAttemptsAndRetriesFromEvents(t *testing.T) {
	r := New("docker")
	for _, e := range scriptedEvents() {
		r.OnEvent(e)
	}

	attempts := func(step string) float64 {
		return testutil.ToFloat64(r.stepAttempts.WithLabelValues(step, "docker"))
	}
	assert.Equal(t, 2.0, attempts("sidecar:git-gate"))
	assert.Equal(t, 1.0, attempts("image"))
	assert.Equal(t, 1.0, attempts("sidecar:egress"))
	assert.Equal(t, 1.0, attempts("ca"))

	want := `
# HELP bot_bottle_step_retries_total Failed attempts of a launch step that were followed by another attempt.
# TYPE bot_bottle_step_retries_total counter
bot_bottle_step_retries_total{backend="docker",step="ca"} 0
bot_bottle_step_retries_total{backend="docker",step="image"} 0
bot_bottle_step_retries_total{backend="docker",step="sidecar:egress"} 0
bot_bottle_step_retries_total{backend="docker",step="sidecar:git-gate"} 1
`
	require.NoError(t, testutil.CollectAndCompare(r.stepRetries, strings.NewReader(want)))
	// A skipped step never started: no attempt series at all.
	assert.Equal(t, 4, testutil.CollectAndCount(r.stepAttempts))
}

func TestRecorderObservesStepDurationOnTerminalEvents(t *testing.T) {
	r := New("smolvm")
	for _, e := range scriptedEvents() {
		r.OnEvent(e)
	}

	// The retried step spans both attempts and the backoff between them
	// (100 ms to 700 ms), not only its last attempt's 300 ms.
	gate := histogram(t, r.Gatherer(), StepDurationName,
		map[string]string{"step": "sidecar:git-gate", "backend": "smolvm", "outcome": "ok"})
	assert.Equal(t, uint64(1), gate.GetSampleCount())
	assert.InDelta(t, 0.6, gate.GetSampleSum(), 1e-9)

	image := histogram(t, r.Gatherer(), StepDurationName,
		map[string]string{"step": "image", "backend": "smolvm", "outcome": "ok"})
	assert.InDelta(t, 0.4, image.GetSampleSum(), 1e-9)
	// 0.4 s falls in the 0.512 bucket and not in the 0.256 one.
	for _, b := range image.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 0.4 {
			want = 1
		}
		assert.Equal(t, want, b.GetCumulativeCount(), "bucket le=%g", b.GetUpperBound())
	}

	egress := histogram(t, r.Gatherer(), StepDurationName,
		map[string]string{"step": "sidecar:egress", "backend": "smolvm", "outcome": "failed"})
	assert.InDelta(t, 0.3, egress.GetSampleSum(), 1e-9)
	ca := histogram(t, r.Gatherer(), StepDurationName,
		map[string]string{"step": "ca", "backend": "smolvm", "outcome": "cancelled"})
	assert.InDelta(t, 0.05, ca.GetSampleSum(), 1e-9)

	// Four terminal events, four series; skipped boot has none.
	assert.Equal(t, 4, testutil.CollectAndCount(r.stepDuration))
}

func TestRecorderFallsBackToEventDurationWithoutStart(t *testing.T) {
	r := New("docker")
	r.OnEvent(dag.Event{Kind: dag.EventSucceeded, Step: "prompt", Offset: ms(900), Duration: ms(120), Attempt: 1})
	h := histogram(t, r.Gatherer(), StepDurationName,
		map[string]string{"step": "prompt", "backend": "docker", "outcome": "ok"})
	assert.InDelta(t, 0.12, h.GetSampleSum(), 1e-9)
}

func TestRecorderIsSafeForConcurrentEvents(t *testing.T) {
	r := New("docker")
	const workers, steps = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range steps {
				id := fmt.Sprintf("w%d-s%d", w, s)
				r.OnEvent(dag.Event{Kind: dag.EventStarted, Step: id, Attempt: 1, Offset: ms(s)})
				r.OnEvent(dag.Event{Kind: dag.EventRetrying, Step: id, Attempt: 1, Offset: ms(s + 1)})
				r.OnEvent(dag.Event{Kind: dag.EventStarted, Step: id, Attempt: 2, Offset: ms(s + 2)})
				r.OnEvent(dag.Event{Kind: dag.EventSucceeded, Step: id, Attempt: 2, Offset: ms(s + 10), Duration: ms(8)})
			}
		}()
	}
	wg.Wait()

	// Gather once and index by step: each step's duration runs from its
	// first start (offset s) to its success (offset s+10ms).
	sums := map[string]float64{}
	counts := map[string]float64{}
	mfs, err := r.Gatherer().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var step string
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "step" {
					step = lp.GetValue()
				}
			}
			switch mf.GetName() {
			case StepDurationName:
				sums[step] += m.GetHistogram().GetSampleSum()
			case StepAttemptsName, StepRetriesName:
				counts[mf.GetName()+"/"+step] += m.GetCounter().GetValue()
			}
		}
	}
	require.Len(t, sums, workers*steps)
	for w := range workers {
		for s := range steps {
			id := fmt.Sprintf("w%d-s%d", w, s)
			assert.Equal(t, 2.0, counts[StepAttemptsName+"/"+id], id)
			assert.Equal(t, 1.0, counts[StepRetriesName+"/"+id], id)
			assert.InDelta(t, 0.010, sums[id], 1e-9, id)
		}
	}
}

func TestObserveLaunch(t *testing.T) {
	r := New("docker")
	r.ObserveLaunch(launchOK(), LaunchOK)
	r.ObserveLaunch(launchFailed(), LaunchFailed)
	r.ObserveLaunch(nil, LaunchFailed) // failed before the graph ran

	want := `
# HELP bot_bottle_launches_total Launches by outcome.
# TYPE bot_bottle_launches_total counter
bot_bottle_launches_total{backend="docker",outcome="failed"} 2
bot_bottle_launches_total{backend="docker",outcome="ok"} 1
`
	require.NoError(t, testutil.CollectAndCompare(r.launches, strings.NewReader(want)))

	ok := histogram(t, r.Gatherer(), LaunchDurationName, map[string]string{"backend": "docker", "outcome": "ok"})
	assert.Equal(t, uint64(1), ok.GetSampleCount())
	assert.InDelta(t, 1.5, ok.GetSampleSum(), 1e-9)
	failed := histogram(t, r.Gatherer(), LaunchDurationName, map[string]string{"backend": "docker", "outcome": "failed"})
	assert.Equal(t, uint64(1), failed.GetSampleCount(), "a nil result only counts")
	assert.InDelta(t, 1.0, failed.GetSampleSum(), 1e-9)

	cp := histogram(t, r.Gatherer(), LaunchCriticalPathName, map[string]string{"backend": "docker"})
	assert.Equal(t, uint64(2), cp.GetSampleCount())
	assert.InDelta(t, 1.5+0.7, cp.GetSampleSum(), 1e-9)
}

func TestBucketsResolveMillisecondsToAMinute(t *testing.T) {
	require.NotEmpty(t, DurationBuckets)
	assert.InDelta(t, 0.001, DurationBuckets[0], 1e-12)
	assert.Greater(t, DurationBuckets[len(DurationBuckets)-1], 60.0)
	for i := 1; i < len(DurationBuckets); i++ {
		assert.InDelta(t, 2.0, DurationBuckets[i]/DurationBuckets[i-1], 1e-9)
	}
}

func TestRecorderUsesAPrivateRegistry(t *testing.T) {
	a, b := New("docker"), New("docker")
	a.OnEvent(dag.Event{Kind: dag.EventStarted, Step: "boot", Attempt: 1})
	a.ObserveLaunch(&dag.Result{Wall: time.Second}, LaunchOK)

	assert.Equal(t, 1.0, testutil.ToFloat64(a.stepAttempts.WithLabelValues("boot", "docker")))
	assert.Equal(t, 0, testutil.CollectAndCount(b.stepAttempts), "recorders share nothing")

	mfs, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		assert.False(t, strings.HasPrefix(mf.GetName(), "bot_bottle_"), "%s leaked into the default registry", mf.GetName())
	}
	// Registry and Gatherer expose the same collectors.
	n, err := testutil.GatherAndCount(a.Registry(), StepAttemptsName)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, "docker", a.Backend())
}
