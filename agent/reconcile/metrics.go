package reconcile

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flotilla-dev/flotilla/agent/apply"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

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

// count records a finished sync.
func (s *Syncer) count(st *flotillav1.AppStatus, res syncResult, err error) {
	m := s.opts.Metrics
	if m == nil {
		return
	}
	m.duration.Observe(st.GetFinishedAt().AsTime().Sub(st.GetStartedAt().AsTime()).Seconds())
	result := "succeeded"
	switch {
	case err != nil:
		result = "failed"
	case res.noop:
		result = "noop"
	}
	m.syncs.WithLabelValues(result).Inc()
	writes := &apply.ChangeSet{}
	writes.Append(res.applied...)
	writes.Append(res.pruned...)
	if res.removal != nil {
		writes.Append(res.removal.deleted...)
	}
	m.writes.Add(float64(writes.Writes()))
}
