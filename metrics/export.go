package metrics

import (
	"context"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
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
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
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
