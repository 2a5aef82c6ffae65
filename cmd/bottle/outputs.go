package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
	"github.com/bot-bottle/bot-bottle/metrics"
)

// outputFlags are the timing outputs shared by launch and bench.
type outputFlags struct {
	metricsFile string
	pushGateway string
	timings     string
	trace       string
	gantt       string
	progress    string
}

func (o *outputFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.metricsFile, "metrics-file", "", "write Prometheus metrics (text format, atomically) to `PATH`, e.g. for node_exporter's textfile collector")
	f.StringVar(&o.pushGateway, "push-gateway", "", "push metrics to the Pushgateway at `URL` (job bot_bottle)")
	f.StringVar(&o.timings, "timings", "", "write step timings as JSON to `PATH` (- for stdout)")
	f.StringVar(&o.trace, "trace", "", "write a Chrome trace-event JSON (open in Perfetto) to `PATH`")
	f.StringVar(&o.gantt, "gantt", "", "write an SVG timeline of the steps to `PATH.svg`")
	f.StringVar(&o.progress, "progress", "auto", "progress display: auto, tty, plain or none")
}

func (o *outputFlags) progressMode() (metrics.ProgressMode, error) {
	m, err := metrics.ParseProgressMode(o.progress)
	if err != nil {
		return m, usageErrorf("--progress: %v", err)
	}
	return m, nil
}

// newProgress opens the progress display on stderr.
func (o *outputFlags) newProgress() (metrics.Progress, error) {
	mode, err := o.progressMode()
	if err != nil {
		return nil, err
	}
	return metrics.NewProgress(os.Stderr, mode, metrics.WithColor(os.Getenv("NO_COLOR") == "" && metrics.IsTerminal(os.Stderr)))
}

// writeResult writes the per-launch outputs of one result.
func (o *outputFlags) writeResult(res *dag.Result, slug, agent, backend string, stdout io.Writer) error {
	if res == nil {
		return nil
	}
	if o.timings != "" {
		if err := metrics.WriteTimings(o.timings, metrics.NewTimings(res, slug, agent, backend), stdout); err != nil {
			return fmt.Errorf("--timings: %w", err)
		}
	}
	if o.trace != "" {
		if err := atomicfile.Write(o.trace, 0o644, func(w io.Writer) error { return metrics.WriteTrace(w, res, "bottle "+slug) }); err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
	}
	if o.gantt != "" {
		title := fmt.Sprintf("%s (%s, %s)", slug, agent, backend)
		if err := atomicfile.Write(o.gantt, 0o644, func(w io.Writer) error { return metrics.WriteGantt(w, res, title) }); err != nil {
			return fmt.Errorf("--gantt: %w", err)
		}
	}
	return nil
}

// writeMetrics writes or pushes the recorder's metrics.
func (o *outputFlags) writeMetrics(ctx context.Context, rec *metrics.Recorder, agent, backend string) error {
	if o.metricsFile != "" {
		if err := metrics.WriteTextfile(o.metricsFile, rec.Gatherer()); err != nil {
			return fmt.Errorf("--metrics-file: %w", err)
		}
	}
	if o.pushGateway != "" {
		if err := metrics.Push(ctx, o.pushGateway, rec.Gatherer(), agent, backend); err != nil {
			return fmt.Errorf("--push-gateway: %w", err)
		}
	}
	return nil
}
