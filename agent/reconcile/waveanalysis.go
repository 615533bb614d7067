package reconcile

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// waveAnalysisRetry is how soon a wave analysis the API server failed to
// advance is tried again.
const waveAnalysisRetry = 10 * time.Second

// waveAnalysis advances the analysis of d's fleet wave and returns what
// st, the status being made of d, reports of it. The run starts once the
// application synced d and st is Synced and Healthy; once started it runs
// to its end whatever the application's health does (the hub decides what
// a regression means). The worker's wave timer is set to when the run
// wants its next look. Once per desired state, the application's runs of
// earlier ones are ended and the oldest deleted (Expire).
func (w *appWorker) waveAnalysis(ctx context.Context, d *Desired, st *flotillav1.AppStatus) *flotillav1.WaveAnalysisStatus {
	runner := w.syncer.deps.WaveAnalyses
	w.waveNext = time.Time{}
	if runner == nil || d.State.GetDeletion() != nil {
		return nil
	}
	log := w.syncer.log.With("cluster", d.State.GetCluster(), "app", w.app, "history_id", d.State.GetHistoryId())
	if w.synced && w.waveExpired != d.State.GetHistoryId() {
		if err := runner.Expire(ctx, d.State); err != nil {
			log.Error("ending earlier wave analyses", "error", err)
		} else {
			w.waveExpired = d.State.GetHistoryId()
		}
	}
	if d.State.GetWave().GetAnalysis() == nil {
		return nil
	}
	start := w.synced && st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED &&
		st.GetSyncStatus() == flotillav1.SyncStatus_SYNC_STATUS_SYNCED && st.GetHealth() == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY
	wa, next, err := runner.Run(ctx, d.State, start)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("wave analysis", "rollout", d.State.GetWave().GetRollout(), "wave", d.State.GetWave().GetWave(), "error", err)
			w.waveNext = time.Now().Add(waveAnalysisRetry)
		}
		return st.GetWaveAnalysis() // as last reported
	}
	w.waveNext = next
	return wa
}

// observeWaveAnalysis advances the wave analysis alone, when its next
// measurement is due, and reports it as observeHealth does.
func (w *appWorker) observeWaveAnalysis(ctx context.Context) {
	d, prev := w.observable(ctx)
	if prev == nil {
		return
	}
	w.reportObserved(ctx, prev, withWaveAnalysis(prev, w.waveAnalysis(ctx, d, prev)))
}

// waveAnalysisEvent is the event of a wave analysis that changed phase or
// took a measurement between prev and st (nil when it did neither):
// WaveAnalysisSucceeded once Successful, WaveAnalysisFailed (a warning,
// with the measurements) once Failed, Error or Inconclusive,
// WaveAnalysisProgressed before.
func waveAnalysisEvent(prev, st *flotillav1.AppStatus) *flotillav1.Event {
	wa := st.GetWaveAnalysis()
	if wa == nil {
		return nil
	}
	a, old := wa.GetAnalysis(), prev.GetWaveAnalysis().GetAnalysis()
	if old.GetName() == a.GetName() && old.GetPhase() == a.GetPhase() &&
		slices.EqualFunc(old.GetMeasurements(), a.GetMeasurements(), func(x, y *flotillav1.MeasurementStatus) bool { return proto.Equal(x, y) }) {
		return nil
	}
	typ, reason := flotillav1.EventType_EVENT_TYPE_NORMAL, flotillav1.ReasonWaveAnalysisProgressed
	switch phase := analysis.Phase(a.GetPhase()); {
	case phase == analysis.Successful:
		reason = flotillav1.ReasonWaveAnalysisSucceeded
	case phase.Completed():
		typ, reason = flotillav1.EventType_EVENT_TYPE_WARNING, flotillav1.ReasonWaveAnalysisFailed
	}
	msg := fmt.Sprintf("wave %d of fleet rollout %s: AnalysisRun %s %s", wa.GetWave(), wa.GetRollout(), a.GetName(), a.GetPhase())
	if a.GetMessage() != "" {
		msg += ": " + a.GetMessage()
	}
	// The measurements read as a Rollout's analysis reads in its events.
	if m := (&flotillav1.RolloutStatus{Analysis: a}).Measurements(); m != "" {
		msg += "; measurements: " + m
	}
	return eventOf(st, typ, reason, msg)
}
