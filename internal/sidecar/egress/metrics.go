package egress

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics live in a private registry served only on MetricsListen, so
// nothing about other processes leaks and the agent cannot read them.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	injected *prometheus.CounterVec
	upstream prometheus.Histogram
	reloads  *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bot_bottle_egress_requests_total",
			Help: "Requests handled by the egress proxy, by decision (allow, deny, inject, block).",
		}, []string{"decision"}),
		injected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bot_bottle_egress_injected_tokens_total",
			Help: "Tokens injected into requests, by route host.",
		}, []string{"route"}),
		upstream: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bot_bottle_egress_upstream_duration_seconds",
			Help:    "Time from sending a request upstream to receiving its response headers.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bot_bottle_egress_reloads_total",
			Help: "Policy reloads, by result (ok, error).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.requests, m.injected, m.upstream, m.reloads)
	// Pre-create the decision series so dashboards see zeros, not gaps.
	for _, d := range []string{DecisionAllow, DecisionDeny, DecisionInject, DecisionBlock} {
		m.requests.WithLabelValues(d)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
