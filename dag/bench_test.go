package dag_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
)

// noopStep is the cheapest possible step, so the benchmarks measure the
// executor alone.
type noopStep struct {
	id   string
	deps []string
}

func (s *noopStep) ID() string                { return s.id }
func (s *noopStep) Deps() []string            { return s.deps }
func (s *noopStep) Run(context.Context) error { return nil }

// shapeDeps returns the dependency lists of a benchmark graph.
func shapeDeps(shape string, n int) [][]string {
	deps := make([][]string, n)
	switch shape {
	case "chain":
		for i := 1; i < n; i++ {
			deps[i] = []string{stepName(i - 1)}
		}
	case "fanout":
		for i := 1; i < n; i++ {
			deps[i] = []string{stepName(0)}
		}
	case "random":
		deps = randomDeps(42, n, 4)
	default:
		panic("unknown shape " + shape)
	}
	return deps
}

func BenchmarkExecute(b *testing.B) {
	ctx := context.Background()
	for _, shape := range []string{"chain", "fanout", "random"} {
		for _, n := range []int{10, 100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s-%d", shape, n), func(b *testing.B) {
				deps := shapeDeps(shape, n)
				steps := make([]dag.Step, n)
				for i := range n {
					steps[i] = &noopStep{id: stepName(i), deps: deps[i]}
				}
				g, err := dag.New(steps...) // outside the timer: only Execute is measured
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				cpuBefore := processCPUTime()
				for b.Loop() {
					if _, err := g.Execute(ctx, dag.Options{}); err != nil {
						b.Fatal(err)
					}
				}
				cpu := processCPUTime() - cpuBefore
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/step")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/step")
			})
		}
	}
}

// stampStep records, on a shared monotonic time base, when its Run began and
// when it was about to return.
type stampStep struct {
	noopStep
	index       int
	base        time.Time
	work        time.Duration // how long Run blocks, as an I/O-bound step would
	starts, end []time.Duration
}

func (s *stampStep) Run(context.Context) error {
	s.starts[s.index] = time.Since(s.base)
	if s.work > 0 {
		time.Sleep(s.work)
	}
	s.end[s.index] = time.Since(s.base)
	return nil
}

// BenchmarkHandoff measures how long a step waits between its last
// dependency returning from Run and its own Run beginning.
//
// With no-op steps on a wide graph every core is saturated, so the figure
// is mostly queueing behind the other ready steps (fanout-1000: the last of
// 999 dependents waits for the 998 before it). The chain and the I/O-bound
// graph (steps blocking 200µs, as real launch steps block on the engine)
// show the executor's own latency.
func BenchmarkHandoff(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		shape string
		n     int
		work  time.Duration
	}{
		{"chain", 100, 0},
		{"random", 1000, 0},
		{"fanout", 1000, 0},
		{"random", 300, 200 * time.Microsecond},
	} {
		name := fmt.Sprintf("%s-%d", tc.shape, tc.n)
		if tc.work > 0 {
			name += "-io"
		}
		b.Run(name, func(b *testing.B) {
			deps := shapeDeps(tc.shape, tc.n)
			base := time.Now()
			starts := make([]time.Duration, tc.n)
			ends := make([]time.Duration, tc.n)
			steps := make([]dag.Step, tc.n)
			for i := range tc.n {
				steps[i] = &stampStep{noopStep: noopStep{id: stepName(i), deps: deps[i]}, index: i, base: base, work: tc.work, starts: starts, end: ends}
			}
			g, err := dag.New(steps...)
			if err != nil {
				b.Fatal(err)
			}
			index := map[string]int{}
			for i := range tc.n {
				index[stepName(i)] = i
			}
			var handoffs []time.Duration
			b.ResetTimer()
			for b.Loop() {
				if _, err := g.Execute(ctx, dag.Options{}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				for i, ds := range deps {
					if len(ds) == 0 {
						continue
					}
					var lastEnd time.Duration
					for _, d := range ds {
						lastEnd = max(lastEnd, ends[index[d]])
					}
					handoffs = append(handoffs, starts[i]-lastEnd)
				}
				b.StartTimer()
			}
			slices.Sort(handoffs)
			b.ReportMetric(float64(percentile(handoffs, 0.50).Nanoseconds()), "ns/handoff-p50")
			b.ReportMetric(float64(percentile(handoffs, 0.99).Nanoseconds()), "ns/handoff-p99")
			b.ReportMetric(float64(handoffs[len(handoffs)-1].Nanoseconds()), "ns/handoff-max")
		})
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// BenchmarkNew measures validating and building a graph, cycle prevention
// included.
func BenchmarkNew(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("random-%d", n), func(b *testing.B) {
			deps := shapeDeps("random", n)
			steps := make([]dag.Step, n)
			for i := range n {
				steps[i] = &noopStep{id: stepName(i), deps: deps[i]}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := dag.New(steps...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/step")
		})
	}
}
