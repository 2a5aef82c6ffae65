package metrics

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// WriteTextfile writes everything g gathers in the Prometheus text format
// to path, for node_exporter's textfile collector (whose directory only
// reads files ending in .prom). The file is replaced atomically, so the
// collector never scrapes a half-written file.
func WriteTextfile(path string, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	return writeFileAtomic(path, func(w io.Writer) error {
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
				return fmt.Errorf("encode %s: %w", mf.GetName(), err)
			}
		}
		return nil
	})
}

// Push sends everything g gathers to the Pushgateway at url, replacing the
// group job="bot_bottle", agent, backend (an HTTP PUT to
// <url>/metrics/job/bot_bottle/agent/<agent>/backend/<backend>).
//
// The Pushgateway adds the grouping labels to every pushed series and
// refuses series that carry them already, so agent and backend labels equal
// to the grouping values are removed before sending; the series scraped
// from the gateway are the same as those a textfile would show. A series
// whose agent or backend differs from the grouping value cannot be pushed
// faithfully and makes Push fail.
func Push(ctx context.Context, url string, g prometheus.Gatherer, agent, backend string) error {
	grouping := map[string]string{labelAgent: agent, labelBackend: backend}
	err := push.New(url, pushJob).
		Gatherer(groupingStripper{g: g, grouping: grouping}).
		Grouping(labelAgent, agent).
		Grouping(labelBackend, backend).
		Format(expfmt.NewFormat(expfmt.TypeTextPlain)).
		PushContext(ctx)
	if err != nil {
		return fmt.Errorf("push metrics to %s: %w", url, err)
	}
	return nil
}

// groupingStripper drops the labels the Pushgateway will add back.
type groupingStripper struct {
	g        prometheus.Gatherer
	grouping map[string]string
}

func (s groupingStripper) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := s.g.Gather()
	if err != nil {
		return nil, err
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			kept := m.Label[:0:0]
			for _, lp := range m.GetLabel() {
				want, grouped := s.grouping[lp.GetName()]
				if !grouped {
					kept = append(kept, lp)
					continue
				}
				if lp.GetValue() != want {
					return nil, fmt.Errorf("metric %s has %s=%q but is pushed under %s=%q",
						mf.GetName(), lp.GetName(), lp.GetValue(), lp.GetName(), want)
				}
			}
			m.Label = kept
		}
	}
	return mfs, nil
}

// writeFileAtomic writes path through a temporary file in the same
// directory (rename is atomic only within a file system), synced before the
// rename so a crash leaves either the old or the new content, never a
// truncated file. The result is world-readable like an ordinary output
// file; exporters often run as another user.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Syncing the directory makes the rename itself durable. Some file
	// systems refuse to sync a directory; the data is written either way.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
