package sync

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the sync loop's Prometheus metrics.
type Metrics struct {
	syncs    *prometheus.CounterVec
	duration prometheus.Histogram
	writes   prometheus.Counter
	// driftCorrected counts objects self-heal re-applied.
	driftCorrected prometheus.Counter
}

// NewMetrics registers the sync loop's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_agent_syncs_total", Help: "Syncs of a desired state, by result (succeeded, failed, noop).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flotilla_agent_sync_duration_seconds", Help: "Duration of a sync, from receipt to applied (health excluded).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_agent_object_writes_total", Help: "Objects created, configured or pruned.",
		}),
		driftCorrected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flotilla_agent_drift_corrected_total", Help: "Objects changed or deleted outside Git that self-heal re-applied.",
		}),
	}
	reg.MustRegister(m.syncs, m.duration, m.writes, m.driftCorrected)
	return m
}
