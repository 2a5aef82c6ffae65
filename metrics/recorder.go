// Package metrics turns what the dag executor reports into every timing
// output of a launch: Prometheus metrics (a textfile for node_exporter or a
// push to a Pushgateway), a timings JSON file, a Chrome trace, an SVG Gantt
// chart, live progress renderers and the aggregation behind `bottle bench`.
//
// Everything here consumes dag.Event values (through dag.Observer) or a
// finished *dag.Result; nothing here schedules or runs steps.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bot-bottle/bot-bottle/dag"
)

// Metric names. They are part of the tool's interface: dashboards and
// alerts refer to them, so they do not change.
const (
	StepDurationName       = "bot_bottle_step_duration_seconds"
	StepAttemptsName       = "bot_bottle_step_attempts_total"
	StepRetriesName        = "bot_bottle_step_retries_total"
	LaunchDurationName     = "bot_bottle_launch_duration_seconds"
	LaunchCriticalPathName = "bot_bottle_launch_critical_path_seconds"
	LaunchesName           = "bot_bottle_launches_total"
)

// Label names, and the Pushgateway job the metrics are pushed under.
const (
	labelStep    = "step"
	labelBackend = "backend"
	labelOutcome = "outcome"
	labelAgent   = "agent"
	pushJob      = "bot_bottle"
)

// DurationBuckets resolve step and launch durations from 1 ms to past a
// minute: 0.001 * 2^k for k = 0..16, the last bucket being 65.536 s.
var DurationBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

// Recorder holds the launch metrics in a private registry, so that a
// process embedding bot-bottle never sees them in its default registry and
// tests can create as many as they like.
//
// It is a dag.Observer: step attempts are counted on EventStarted, retries
// on EventRetrying, and a step's duration is observed once, on its terminal
// event (succeeded, failed or cancelled), labelled with that outcome.
// ObserveLaunch records the launch as a whole.
//
// As an observer, a Recorder follows one execution at a time: the duration
// of a retried step is measured from the start of its first attempt, which
// is keyed by step ID. Sequential launches may share it as their observer;
// launches running at once (`bottle bench --parallel`) each observe through
// their own Execution, which records into the same metrics.
type Recorder struct {
	backend string
	reg     *prometheus.Registry

	stepDuration   *prometheus.HistogramVec
	stepAttempts   *prometheus.CounterVec
	stepRetries    *prometheus.CounterVec
	launchDuration *prometheus.HistogramVec
	criticalPath   *prometheus.HistogramVec
	launches       *prometheus.CounterVec

	// starts is the bookkeeping of the Recorder's own OnEvent.
	starts startTracker
}

// startTracker remembers when each running step of one execution first
// started. Step IDs are unique within an execution only.
type startTracker struct {
	mu sync.Mutex
	// firstStart maps a running step to the offset of its first attempt.
	firstStart map[string]time.Duration
}

var (
	_ dag.Observer = (*Recorder)(nil)
	_ dag.Observer = (*executionObserver)(nil)
)

// New returns a Recorder whose metrics carry the given backend label
// ("docker", "smolvm", ...).
func New(backend string) *Recorder {
	r := &Recorder{
		backend: backend,
		reg:     prometheus.NewRegistry(),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    StepDurationName,
			Help:    "Duration of one launch step, from the start of its first attempt to the end of its last (backoff included).",
			Buckets: DurationBuckets,
		}, []string{labelStep, labelBackend, labelOutcome}),
		stepAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: StepAttemptsName,
			Help: "Attempts started per launch step, retries included.",
		}, []string{labelStep, labelBackend}),
		stepRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: StepRetriesName,
			Help: "Failed attempts of a launch step that were followed by another attempt.",
		}, []string{labelStep, labelBackend}),
		launchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    LaunchDurationName,
			Help:    "Wall-clock duration of a whole launch.",
			Buckets: DurationBuckets,
		}, []string{labelBackend, labelOutcome}),
		criticalPath: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    LaunchCriticalPathName,
			Help:    "Summed duration of the launch's critical path, the lower bound on its wall time.",
			Buckets: DurationBuckets,
		}, []string{labelBackend}),
		launches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: LaunchesName,
			Help: "Launches by outcome.",
		}, []string{labelBackend, labelOutcome}),
	}
	r.reg.MustRegister(r.stepDuration, r.stepAttempts, r.stepRetries,
		r.launchDuration, r.criticalPath, r.launches)
	return r
}

// Registry returns the private registry, for callers that register more
// collectors of their own next to the launch metrics.
func (r *Recorder) Registry() *prometheus.Registry { return r.reg }

// Gatherer returns what WriteTextfile and Push need.
func (r *Recorder) Gatherer() prometheus.Gatherer { return r.reg }

// Backend returns the backend label the Recorder was created with.
func (r *Recorder) Backend() string { return r.backend }

// OnEvent implements dag.Observer. It is safe for concurrent use, within
// one execution at a time (see Execution).
func (r *Recorder) OnEvent(e dag.Event) { r.observe(e, &r.starts) }

// Execution returns an observer of one execution that records into r's
// metrics with bookkeeping of its own, so that executions running at once
// never take each other's step start times.
func (r *Recorder) Execution() dag.Observer { return &executionObserver{r: r} }

type executionObserver struct {
	r      *Recorder
	starts startTracker
}

func (x *executionObserver) OnEvent(e dag.Event) { x.r.observe(e, &x.starts) }

func (r *Recorder) observe(e dag.Event, st *startTracker) {
	switch e.Kind {
	case dag.EventStarted:
		r.stepAttempts.WithLabelValues(e.Step, r.backend).Inc()
		// A step that ran has a retries series from its first attempt,
		// at 0 until it retries: a launch without retries still exports
		// the family, and rate() and increase() see 0 rather than no data.
		r.stepRetries.WithLabelValues(e.Step, r.backend)
		st.started(e)
	case dag.EventRetrying:
		r.stepRetries.WithLabelValues(e.Step, r.backend).Inc()
	case dag.EventSucceeded, dag.EventFailed, dag.EventCancelled:
		r.stepDuration.WithLabelValues(e.Step, r.backend, string(terminalOutcome(e.Kind))).
			Observe(st.durationOf(e).Seconds())
	}
}

func (st *startTracker) started(e dag.Event) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.firstStart == nil {
		st.firstStart = make(map[string]time.Duration)
	}
	if _, running := st.firstStart[e.Step]; !running || e.Attempt <= 1 {
		st.firstStart[e.Step] = e.Offset
	}
}

// durationOf measures a finished step like dag.StepResult.Duration does
// (first attempt's start to last attempt's end), so the metric and the
// timings file agree. The event's own Duration covers the last attempt
// only; it is the fallback when the start was not seen.
func (st *startTracker) durationOf(e dag.Event) time.Duration {
	st.mu.Lock()
	start, ok := st.firstStart[e.Step]
	delete(st.firstStart, e.Step)
	st.mu.Unlock()
	if !ok {
		return e.Duration
	}
	return max(e.Offset-start, e.Duration)
}

func terminalOutcome(k dag.EventKind) dag.Outcome {
	switch k {
	case dag.EventSucceeded:
		return dag.OutcomeOK
	case dag.EventFailed:
		return dag.OutcomeFailed
	default:
		return dag.OutcomeCancelled
	}
}

// Launch outcomes used as the outcome label of the launch metrics.
const (
	LaunchOK        = "ok"
	LaunchFailed    = "failed"
	LaunchCancelled = "cancelled"
)

// ObserveLaunch records one launch: its wall time and count under outcome
// (LaunchOK, LaunchFailed, LaunchCancelled, or any short word the caller
// chooses) and, when res has a critical path, that path's duration. A nil
// res only counts the launch (it failed before the graph ran).
func (r *Recorder) ObserveLaunch(res *dag.Result, outcome string) {
	r.launches.WithLabelValues(r.backend, outcome).Inc()
	if res == nil {
		return
	}
	r.launchDuration.WithLabelValues(r.backend, outcome).Observe(res.Wall.Seconds())
	if len(res.CriticalPath) > 0 {
		r.criticalPath.WithLabelValues(r.backend).Observe(res.CriticalPathDuration.Seconds())
	}
}
