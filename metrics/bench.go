package metrics

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/bot-bottle/bot-bottle/dag"
)

// BenchReport aggregates repeated launches (`bottle bench`). Statistics are
// over the successful cycles; failed cycles are counted and their errors
// grouped. Durations are in seconds.
type BenchReport struct {
	Cycles int `json:"cycles"` // successful cycles measured
	Failed int `json:"failed"` // cycles that failed
	// Errors groups the failed cycles' errors by message, most frequent
	// first.
	Errors []BenchError `json:"errors"`
	// Wall is the launch wall time; CriticalPath the critical path's
	// duration; StepSum the sum of all step durations, what a strictly
	// sequential launch would take.
	Wall         BenchStats `json:"wall"`
	CriticalPath BenchStats `json:"critical_path"`
	StepSum      BenchStats `json:"step_sum"`
	// CriticalPathShare is the mean of critical path / wall: near 1 means
	// the launch is as fast as its dependencies allow, lower means
	// scheduling overhead or too little parallelism.
	CriticalPathShare float64 `json:"critical_path_share_mean"`
	// Speedup is the mean of step sum / wall, the factor by which running
	// the graph concurrently beats running its steps one after another.
	Speedup float64 `json:"speedup_mean"`
	// Steps are in the order they first started.
	Steps []BenchStep `json:"steps"`
}

// BenchStats summarises durations, by nearest rank.
type BenchStats struct {
	P50 float64 `json:"p50_seconds"`
	P95 float64 `json:"p95_seconds"`
	Max float64 `json:"max_seconds"`
}

// BenchStep is one step's durations across cycles.
type BenchStep struct {
	ID      string `json:"id"`
	Samples int    `json:"samples"`
	// Retries is the number of extra attempts across all cycles.
	Retries int `json:"retries"`
	BenchStats
}

// BenchError is one distinct failure message and how many cycles hit it.
type BenchError struct {
	Message string `json:"message"`
	Count   int    `json:"count"`
}

// NewBenchReport aggregates the results of successful cycles and the
// errors of failed ones. Only steps that succeeded contribute to step
// statistics, so a stray non-ok step cannot skew them.
func NewBenchReport(results []*dag.Result, failures []error) BenchReport {
	r := BenchReport{Failed: len(failures), Errors: []BenchError{}, Steps: []BenchStep{}}

	var walls, paths, sums []time.Duration
	var shareSum, speedSum float64
	var ratioN int
	perStep := map[string][]time.Duration{}
	retries := map[string]int{}
	var order []string
	for _, res := range results {
		if res == nil {
			continue
		}
		r.Cycles++
		var sum time.Duration
		for _, s := range res.Steps {
			sum += s.Duration
			if s.Outcome != dag.OutcomeOK {
				continue
			}
			if _, seen := perStep[s.ID]; !seen {
				order = append(order, s.ID)
			}
			perStep[s.ID] = append(perStep[s.ID], s.Duration)
			retries[s.ID] += max(s.Attempts-1, 0)
		}
		walls = append(walls, res.Wall)
		paths = append(paths, res.CriticalPathDuration)
		sums = append(sums, sum)
		if res.Wall > 0 {
			shareSum += float64(res.CriticalPathDuration) / float64(res.Wall)
			speedSum += float64(sum) / float64(res.Wall)
			ratioN++
		}
	}
	r.Wall = statsOf(walls)
	r.CriticalPath = statsOf(paths)
	r.StepSum = statsOf(sums)
	if ratioN > 0 {
		r.CriticalPathShare = shareSum / float64(ratioN)
		r.Speedup = speedSum / float64(ratioN)
	}
	for _, id := range order {
		r.Steps = append(r.Steps, BenchStep{
			ID: id, Samples: len(perStep[id]), Retries: retries[id],
			BenchStats: statsOf(perStep[id]),
		})
	}

	counts := map[string]int{}
	var msgs []string
	for _, err := range failures {
		msg := "<nil>"
		if err != nil {
			msg = err.Error()
		}
		if counts[msg] == 0 {
			msgs = append(msgs, msg)
		}
		counts[msg]++
	}
	for _, m := range msgs {
		r.Errors = append(r.Errors, BenchError{Message: m, Count: counts[m]})
	}
	// Stable: equally frequent errors keep the order they first occurred.
	slices.SortStableFunc(r.Errors, func(a, b BenchError) int { return cmp.Compare(b.Count, a.Count) })
	return r
}

func statsOf(ds []time.Duration) BenchStats {
	if len(ds) == 0 {
		return BenchStats{}
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return BenchStats{
		P50: Percentile(sorted, 50).Seconds(),
		P95: Percentile(sorted, 95).Seconds(),
		Max: sorted[len(sorted)-1].Seconds(),
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value such that at least p % of the
// values are less than or equal to it. It returns 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// WriteText prints the report as aligned tables for a terminal: numbers
// right-aligned, names left-aligned.
func (r BenchReport) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	sec := func(f float64) string { return fmt.Sprintf("%.3fs", f) }
	fmt.Fprintf(ew, "%d cycles ok, %d failed\n\n", r.Cycles, r.Failed)

	names := []string{"launch wall", "critical path", "sum of steps"}
	width := len("critical path")
	for _, s := range r.Steps {
		width = max(width, utf8.RuneCountInString(oneLine(s.ID)))
	}
	left := func(s string) string { return fmt.Sprintf("%-*s", width, s) }

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tp50\tp95\tmax\t\n", left(""))
	for i, s := range []BenchStats{r.Wall, r.CriticalPath, r.StepSum} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", left(names[i]), sec(s.P50), sec(s.P95), sec(s.Max))
	}
	_ = tw.Flush()
	fmt.Fprintf(ew, "\ncritical path share of wall (mean): %.1f%%\n", 100*r.CriticalPathShare)
	fmt.Fprintf(ew, "sum of steps / wall (mean speed-up): %.2fx\n\n", r.Speedup)

	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tn\tretries\tp50\tp95\tmax\t\n", left("step"))
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t\n", left(oneLine(s.ID)), s.Samples, s.Retries, sec(s.P50), sec(s.P95), sec(s.Max))
	}
	_ = tw.Flush()
	if len(r.Errors) > 0 {
		fmt.Fprintln(ew, "\nfailures:")
		for _, e := range r.Errors {
			fmt.Fprintf(ew, "  %d× %s\n", e.Count, oneLine(e.Message))
		}
	}
	return ew.err
}

// errWriter keeps the first write error so a sequence of prints can be
// checked once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
