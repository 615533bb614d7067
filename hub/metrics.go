package hub

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the hub's Prometheus metrics, served on /metrics.
type metrics struct {
	registry     *prometheus.Registry
	reconciles   *prometheus.CounterVec
	reconcileDur prometheus.Histogram
	published    *prometheus.CounterVec
	gitPolls     *prometheus.CounterVec
	appErrors    prometheus.Gauge
	clusters     prometheus.Gauge
	// publishPending counts the desired states the last publish did not
	// write; the hub retries until it is 0.
	publishPending prometheus.Gauge
	// leader is 1 while this replica leads.
	leader prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_hub_reconciles_total", Help: "Discovery-and-publish passes, by result.",
		}, []string{"result"}),
		reconcileDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flotilla_hub_reconcile_duration_seconds", Help: "Duration of a discovery-and-publish pass.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_hub_desired_states_published_total", Help: "Desired states published, by kind (update or deletion).",
		}, []string{"kind"}),
		gitPolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_hub_git_polls_total", Help: "Git polls, by repository and result (unchanged, fetched, error).",
		}, []string{"repo", "result"}),
		appErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_hub_app_errors", Help: "Applications that failed discovery or rendering in the last pass.",
		}),
		clusters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_hub_clusters", Help: "Clusters known from registrations.",
		}),
		publishPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_hub_publish_pending",
			Help: "Desired states the last publish did not write (when it failed before writing any: every application of every cluster it targets); retried with backoff until 0.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_hub_leader", Help: "1 while this hub replica leads (polls Git, publishes), 0 while it follows.",
		}),
	}
	m.registry.MustRegister(m.reconciles, m.reconcileDur, m.published, m.gitPolls, m.appErrors, m.clusters, m.publishPending, m.leader,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
