package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
	"github.com/bot-bottle/bot-bottle/internal/launcher"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
	"github.com/bot-bottle/bot-bottle/metrics"
)

func newBenchCmd() *cobra.Command {
	var (
		lf       launchFlags
		of       outputFlags
		n        int
		parallel int
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "bench AGENT [-f FILE] [--backend B] [-n N] [--parallel P] [--max-parallel M] [--json]",
		Short: "Measure launch-to-ready latency over repeated launches",
		Long: `Run N launch-to-ready cycles of AGENT, P at a time, removing each bottle
once ready. Reports per-step p50/p95/max, launch wall p50/p95/max, the
critical path's share of wall time, and the sum of step durations against
wall time (the speed-up the step graph gives over a sequential launch).
Failed cycles are counted and reported, and always torn down.

Images are built before the first cycle so that a cold cache does not
skew the figures. --timings writes every cycle's timings as a JSON array;
--trace and --gantt draw the median cycle.`,
		Example: `  bottle bench demo -n 10 --parallel 2
  bottle bench demo -n 5 --max-parallel 1 --json > sequential.json
  bottle bench demo -n 20 --metrics-file bench.prom`,
		Args: exactAgentArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			if n < 1 || parallel < 1 {
				return usageErrorf("-n and --parallel must be at least 1 (got %d and %d)", n, parallel)
			}
			ctx := cmd.Context()
			m, _, err := loadManifest(lf.file)
			if err != nil {
				return err
			}
			rt, err := openRuntime(ctx, lf.backend, lf.smolvm)
			if err != nil {
				return err
			}
			defer rt.Close()
			agent, found := m.Agents[args[0]]
			if !found {
				return usageErrorf("agent %q is not in the manifest (agents: %s)", args[0], strings.Join(slices.Sorted(maps.Keys(m.Agents)), ", "))
			}
			// Warm the image cache outside the measurement.
			if _, err := rt.images.AgentImage(ctx, m.Bottles[agent.Bottle].Image); err != nil {
				return err
			}
			if _, err := rt.images.SidecarImage(ctx); err != nil {
				return err
			}
			progress := metrics.Progress(nil)
			if of.progress != "auto" {
				if progress, err = of.newProgress(); err != nil {
					return err
				}
			}
			rec := metrics.New(lf.backend)
			cwd, _ := os.Getwd()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
			type cycle struct {
				slug string
				res  *dag.Result
				err  error
			}
			cycles := make([]cycle, n)
			sem := make(chan struct{}, parallel)
			var wg sync.WaitGroup
			for i := range n {
				if ctx.Err() != nil {
					cycles[i].err = ctx.Err()
					continue
				}
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					// Cycles run at once: each observes through its own
					// view of the recorder.
					obs := []dag.Observer{rec.Execution()}
					if progress != nil {
						obs = append(obs, progress)
					}
					launched, res, err := launcher.Run(ctx, lf.options(m, args[0], cwd, rt, log, obs...))
					c := cycle{res: res, err: err}
					if res != nil {
						outcome := "ok"
						if err != nil {
							outcome = "failed"
						}
						rec.ObserveLaunch(res, outcome)
					}
					if launched != nil {
						c.slug = launched.Plan.Slug
						if rmErr := launcher.RemoveSlug(context.WithoutCancel(ctx), rt.engine, rt.machines, statedir.Root(), c.slug); rmErr != nil {
							c.err = errors.Join(c.err, fmt.Errorf("teardown of %s: %w", c.slug, rmErr))
						}
					}
					cycles[i] = c
					fmt.Fprintf(os.Stderr, "cycle %d/%d: %s\n", i+1, n, cycleLine(c.res, c.err))
				}()
			}
			wg.Wait()
			if progress != nil {
				_ = progress.Close()
			}
			var ok []*dag.Result
			var failures []error
			var timings []metrics.Timings
			for _, c := range cycles {
				if c.err != nil {
					failures = append(failures, c.err)
					continue
				}
				ok = append(ok, c.res)
				timings = append(timings, metrics.NewTimings(c.res, c.slug, args[0], lf.backend))
			}
			report := metrics.NewBenchReport(ok, failures)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else if err := report.WriteText(out); err != nil {
				return err
			}
			if err := writeBenchOutputs(ctx, &of, rec, ok, timings, args[0], lf.backend); err != nil {
				return err
			}
			if len(failures) > 0 {
				err := fmt.Errorf("%d of %d cycles failed", len(failures), n)
				// A problem found before anything was created (a token
				// not set, a skill missing) fails every cycle alike and
				// is the caller's to fix, as with launch: exit 2.
				var pe *launcher.PreflightError
				if len(ok) == 0 && errors.As(failures[0], &pe) {
					return errors.Join(err, pe)
				}
				return err
			}
			return nil
		},
	}
	lf.register(cmd)
	of.register(cmd)
	cmd.Flags().IntVarP(&n, "count", "n", 5, "number of launch cycles")
	cmd.Flags().IntVar(&parallel, "parallel", 1, "cycles running at once")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func cycleLine(res *dag.Result, err error) string {
	if err != nil {
		return "failed: " + err.Error()
	}
	return fmt.Sprintf("ready in %s (critical path %s)", res.Wall.Round(1e6), res.CriticalPathDuration.Round(1e6))
}

func writeBenchOutputs(ctx context.Context, of *outputFlags, rec *metrics.Recorder, ok []*dag.Result, timings []metrics.Timings, agent, backend string) error {
	if of.timings != "" {
		write := func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(timings)
		}
		var err error
		if of.timings == "-" {
			err = write(os.Stdout)
		} else {
			err = atomicfile.Write(of.timings, 0o644, write)
		}
		if err != nil {
			return fmt.Errorf("--timings: %w", err)
		}
	}
	if len(ok) > 0 && (of.trace != "" || of.gantt != "") {
		sorted := append([]*dag.Result{}, ok...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Wall < sorted[j].Wall })
		median := sorted[len(sorted)/2]
		one := *of
		one.timings = ""
		if err := one.writeResult(median, "median cycle", agent, backend, os.Stdout); err != nil {
			return err
		}
	}
	return of.writeMetrics(context.WithoutCancel(ctx), rec, agent, backend)
}
