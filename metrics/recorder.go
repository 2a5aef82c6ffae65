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
// A Recorder follows one execution at a time: the duration of a retried
// step is measured from the start of its first attempt, which is keyed by
// step ID. Sequential launches (as in `bottle bench`) may share one.
type Recorder struct {
	backend string
	reg     *prometheus.Registry

	stepDuration   *prometheus.HistogramVec
	stepAttempts   *prometheus.CounterVec
	stepRetries    *prometheus.CounterVec
	launchDuration *prometheus.HistogramVec
	criticalPath   *prometheus.HistogramVec
	launches       *prometheus.CounterVec

	mu sync.Mutex
	// firstStart maps a running step to the offset of its first attempt.
	firstStart map[string]time.Duration
}

var _ dag.Observer = (*Recorder)(nil)

// New returns a Recorder whose metrics carry the given backend label
// ("docker", "smolvm", ...).
func New(backend string) *Recorder {
	r := &Recorder{
		backend:    backend,
		reg:        prometheus.NewRegistry(),
		firstStart: make(map[string]time.Duration),
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

// OnEvent implements dag.Observer. It is safe for concurrent use.
func (r *Recorder) OnEvent(e dag.Event) {
	switch e.Kind {
	case dag.EventStarted:
		r.stepAttempts.WithLabelValues(e.Step, r.backend).Inc()
		r.mu.Lock()
		if _, running := r.firstStart[e.Step]; !running || e.Attempt <= 1 {
			r.firstStart[e.Step] = e.Offset
		}
		r.mu.Unlock()
	case dag.EventRetrying:
		r.stepRetries.WithLabelValues(e.Step, r.backend).Inc()
	case dag.EventSucceeded, dag.EventFailed, dag.EventCancelled:
		r.stepDuration.WithLabelValues(e.Step, r.backend, string(terminalOutcome(e.Kind))).
			Observe(r.stepDurationOf(e).Seconds())
	}
}

// stepDurationOf measures a finished step like dag.StepResult.Duration does
// (first attempt's start to last attempt's end), so the metric and the
// timings file agree. The event's own Duration covers the last attempt
// only; it is the fallback when the start was not seen.
func (r *Recorder) stepDurationOf(e dag.Event) time.Duration {
	r.mu.Lock()
	start, ok := r.firstStart[e.Step]
	delete(r.firstStart, e.Step)
	r.mu.Unlock()
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
