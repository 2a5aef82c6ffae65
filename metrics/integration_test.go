package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
)

// The fixture's critical path, worked out by hand in launchOK's comment,
// is what the engine's own critical-path computation finds for the same
// graph and durations, and what the timings file carries.
func TestFixtureCriticalPathAgreesWithTheEngine(t *testing.T) {
	res := launchOK()
	steps := make([]dag.Step, 0, len(res.Steps))
	durations := map[string]time.Duration{}
	for _, s := range res.Steps {
		steps = append(steps, &dagtest.FakeStep{Name: s.ID, DependsOn: s.Deps})
		durations[s.ID] = s.Duration
	}
	g, err := dag.New(steps...)
	require.NoError(t, err)
	path, total := dag.CriticalPath(g, durations)
	assert.Equal(t, res.CriticalPath, path)
	assert.Equal(t, res.CriticalPathDuration, total)

	tm := NewTimings(res, "s", "a", "docker")
	assert.Equal(t, path, tm.CriticalPath)
	assert.InDelta(t, total.Seconds(), tm.CriticalPathSeconds, 1e-9)
}

// advance returns a step hook that makes each attempt take d on the fake
// clock.
func advance(clock *dagtest.FakeClock, d time.Duration) func(context.Context, int) error {
	return func(context.Context, int) error {
		clock.Advance(d)
		return nil
	}
}

// TestThroughTheExecutor runs a real graph one step at a time on a fake
// clock, so every duration is exact, with all observers attached, and
// checks that every output agrees with the result.
func TestThroughTheExecutor(t *testing.T) {
	clock := dagtest.NewFakeClock(fixtureStart)
	retryAll := &dag.RetryPolicy{MaxAttempts: 3, InitialDelay: ms(100), Multiplier: 2, Retryable: func(error) bool { return true }}
	steps := []dag.Step{
		&dagtest.FakeStep{Name: "network", Hook: advance(clock, ms(100))},
		&dagtest.FakeStep{Name: "image", Hook: advance(clock, ms(400))},
		&dagtest.FakeStep{Name: "sidecar:git-gate", DependsOn: []string{"network"}, FailUntil: 1, Policy: retryAll,
			Err: errors.New("connection refused"),
			Hook: func(_ context.Context, attempt int) error {
				clock.Advance(map[int]time.Duration{1: ms(200), 2: ms(300)}[attempt])
				return nil
			}},
		&dagtest.FakeStep{Name: "boot", DependsOn: []string{"image", "sidecar:git-gate"}, Hook: advance(clock, ms(500))},
	}
	g, err := dag.New(steps...)
	require.NoError(t, err)

	rec := New("docker")
	var plain bytes.Buffer
	progress, err := NewProgress(&plain, ProgressPlain)
	require.NoError(t, err)
	log := &dagtest.EventLog{}
	res, err := g.Execute(context.Background(), dag.Options{
		MaxParallel: 1,
		Clock:       clock,
		Rand:        func() float64 { return 0.5 },
		Observers:   []dag.Observer{rec, progress, log},
	})
	require.NoError(t, err)
	require.NoError(t, progress.Close())
	rec.ObserveLaunch(res, LaunchOK)

	// One at a time: the wall time is the sum of the steps, backoff
	// included: 100 + 400 + (200 + 100 + 300) + 500 ms.
	assert.Equal(t, ms(1600), res.Wall)
	assert.Equal(t, []string{"network", "sidecar:git-gate", "boot"}, res.CriticalPath)
	assert.Equal(t, ms(1200), res.CriticalPathDuration)

	// Metrics agree with the result.
	for _, s := range res.Steps {
		h := histogram(t, rec.Gatherer(), StepDurationName, map[string]string{"step": s.ID, "backend": "docker", "outcome": "ok"})
		assert.Equal(t, uint64(1), h.GetSampleCount(), s.ID)
		assert.InDelta(t, s.Duration.Seconds(), h.GetSampleSum(), 1e-9, s.ID)
	}
	gate, ok := res.Step("sidecar:git-gate")
	require.True(t, ok)
	assert.Equal(t, ms(600), gate.Duration)
	assert.Equal(t, 2, gate.Attempts)
	// Every step that ran has a retries series; only git-gate's is not 0.
	n, err := countSeries(rec, StepRetriesName)
	require.NoError(t, err)
	assert.Equal(t, len(res.Steps), n)
	for _, s := range res.Steps {
		want := 0.0
		if s.ID == "sidecar:git-gate" {
			want = 1
		}
		assert.Equal(t, want, testutil.ToFloat64(rec.stepRetries.WithLabelValues(s.ID, "docker")), s.ID)
	}
	launch := histogram(t, rec.Gatherer(), LaunchDurationName, map[string]string{"backend": "docker", "outcome": "ok"})
	assert.InDelta(t, 1.6, launch.GetSampleSum(), 1e-9)

	// The plain log has one line per event, in order.
	lines := strings.Split(strings.TrimSuffix(plain.String(), "\n"), "\n")
	events := log.Events()
	require.Len(t, lines, len(events))
	for i, e := range events {
		assert.Equal(t, FormatEvent(e, false), lines[i])
	}
	assert.Contains(t, plain.String(), "sidecar:git-gate retrying in 100ms: connection refused")
	assert.Contains(t, plain.String(), "sidecar:git-gate succeeded in 600ms (attempt 2)")

	// Timings, trace and chart are valid and complete.
	tm := NewTimings(res, "bottle-7f3a", "claude", "docker")
	var tj bytes.Buffer
	require.NoError(t, EncodeTimings(&tj, tm))
	require.NoError(t, validate(t, compileTimingsSchema(t), tj.Bytes()))
	assert.InDelta(t, 1.6, tm.WallSeconds, 1e-9)

	tr := writeTrace(t, res)
	assertLanesDisjoint(t, tr)
	slices := map[string]int{}
	for _, e := range tr.TraceEvents {
		if e.Ph == "X" {
			slices[e.Name]++
		}
	}
	assert.Equal(t, map[string]int{"network": 1, "image": 1, "sidecar:git-gate": 2, "boot": 1}, slices)

	svg := renderGantt(t, res, "through the executor")
	for _, s := range res.Steps {
		assert.Contains(t, svg.titles, s.ID)
	}
	assert.Contains(t, svg.texts, "wall 1.6s · sum of step durations 1.6s · 1.00× (sum/wall)")
}

func countSeries(r *Recorder, name string) (int, error) {
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric()), nil
		}
	}
	return 0, nil
}

func TestThroughTheExecutorWhenALaunchFails(t *testing.T) {
	clock := dagtest.NewFakeClock(fixtureStart)
	steps := []dag.Step{
		&dagtest.FakeStep{Name: "network", Hook: advance(clock, ms(100)),
			UndoHook: func(context.Context) error { clock.Advance(ms(20)); return nil }},
		&dagtest.FakeStep{Name: "sidecar:egress", DependsOn: []string{"network"}, FailAlways: true,
			Err: errors.New("exit status 1"), Hook: advance(clock, ms(50))},
		&dagtest.FakeStep{Name: "boot", DependsOn: []string{"sidecar:egress"}, Hook: advance(clock, ms(500))},
	}
	g, err := dag.New(steps...)
	require.NoError(t, err)

	rec := New("smolvm")
	out := &syncBuffer{}
	tty, err := NewProgress(out, ProgressTTY, WithRefreshRate(2*time.Millisecond))
	require.NoError(t, err)
	res, err := g.Execute(context.Background(), dag.Options{MaxParallel: 1, Clock: clock, Observers: []dag.Observer{rec, tty}})
	require.Error(t, err)
	closeWithin(t, tty, 10*time.Second)
	rec.ObserveLaunch(res, LaunchFailed)

	failed := histogram(t, rec.Gatherer(), StepDurationName, map[string]string{"step": "sidecar:egress", "backend": "smolvm", "outcome": "failed"})
	assert.InDelta(t, 0.05, failed.GetSampleSum(), 1e-9)
	byID := map[string]StepTiming{}
	tm := NewTimings(res, "s", "a", "smolvm")
	for _, s := range tm.Steps {
		byID[s.ID] = s
	}
	assert.Equal(t, "failed", byID["sidecar:egress"].Outcome)
	assert.Equal(t, "skipped", byID["boot"].Outcome)
	assert.Equal(t, "undone", byID["network"].Outcome)

	var tj bytes.Buffer
	require.NoError(t, EncodeTimings(&tj, tm))
	require.NoError(t, validate(t, compileTimingsSchema(t), tj.Bytes()))
	var back map[string]any
	require.NoError(t, json.Unmarshal(tj.Bytes(), &back))

	tr := writeTrace(t, res)
	assertLanesDisjoint(t, tr)
	names := map[string]bool{}
	for _, e := range tr.TraceEvents {
		names[e.Name] = true
	}
	assert.True(t, names["undo network"])
	assert.Equal(t, []any{"boot"}, tr.OtherData["skipped"])

	svg := renderGantt(t, res, "failed launch")
	for _, s := range res.Steps {
		assert.Contains(t, svg.titles, s.ID)
	}

	text := ansi.ReplaceAllString(out.String(), "")
	assert.Contains(t, text, "✗ sidecar:egress  failed after 50ms: exit status 1")
	assert.Contains(t, text, "- boot  skipped")
	assert.Contains(t, text, "✓ undo network  20ms")
}
