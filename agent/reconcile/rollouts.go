package reconcile

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/health"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// RolloutChanged tells the application owning ro (by its AppLabel) that
// the rollouts controller changed it, so its status is reported again.
func (s *Syncer) RolloutChanged(ro *unstructured.Unstructured) {
	if w := s.worker(s.labelledApp(ro)); w != nil {
		w.noticeChange()
	}
}

// TraceParent is the span context of the last sync of ro's application,
// so the rollout's steps show in the trace of the sync that started them.
func (s *Syncer) TraceParent(ro *unstructured.Unstructured) trace.SpanContext {
	app := s.labelledApp(ro)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.traces[app]
}

// observeHealth re-reads the health of the application's objects and its
// Rollouts' progress, for as long as the application exists, advances the
// analysis of its fleet wave (which may start now that it is Healthy),
// and reports what changed (reportObserved).
func (w *appWorker) observeHealth(ctx context.Context) {
	s := w.syncer
	defer s.releaseMemory() // it lists the application's objects, as a sync does
	if !w.synced {
		return
	}
	d, prev := w.observable(ctx)
	if prev == nil {
		return
	}
	var objs []*unstructured.Unstructured
	for _, r := range prev.GetResources() {
		if !r.GetHook() && r.GetAction() != string(apply.Pruned) && r.GetAction() != string(apply.PruneSkipped) && r.GetAction() != string(apply.Released) {
			objs = append(objs, refOfStatus(r).Object())
		}
	}
	obs, err := s.observe(ctx, objs)
	if err != nil {
		return
	}
	st := withHealth(prev, objs, obs)
	w.reportObserved(ctx, prev, withWaveAnalysis(st, w.waveAnalysis(ctx, d, st)))
}

// observable is the application's current desired state and the status
// last reported of it; nil when there is none to build on (nothing
// arrived yet, or a newer desired state has not reported yet).
func (w *appWorker) observable(ctx context.Context) (*Desired, *flotillav1.AppStatus) {
	d := w.latest()
	if d == nil {
		return nil, nil
	}
	prev, err := w.syncer.deps.Reporter.LastStatus(ctx, d.State.GetCluster(), w.app)
	if err != nil || prev.GetHistoryId() != d.State.GetHistoryId() {
		return nil, nil
	}
	return d, prev
}

// reportObserved reports st, what the worker observed since prev, when
// anything changed: the status whenever any object's health or message,
// a Rollout or the wave analysis did; an event when the application's
// health changed (HealthChanged) or a rollout moved to another step or
// phase (a warning with the measurements when it was aborted), and one
// when the wave analysis changed phase or took a measurement.
func (w *appWorker) reportObserved(ctx context.Context, prev, st *flotillav1.AppStatus) {
	if proto.Equal(st, prev) {
		return
	}
	typ, reason, messages := flotillav1.EventType_EVENT_TYPE_NORMAL, "", []string(nil)
	if st.GetHealth() != prev.GetHealth() {
		reason, messages = flotillav1.ReasonHealthChanged, []string{"health is " + health.Name(st.GetHealth())}
	}
	for _, ro := range st.GetRollouts() {
		old := findRollout(prev.GetRollouts(), ro)
		if old != nil && old.GetPhase() == ro.GetPhase() && old.GetStep() == ro.GetStep() && old.GetCanaryHash() == ro.GetCanaryHash() {
			continue
		}
		msg := fmt.Sprintf("Rollout %s/%s: %s", ro.GetNamespace(), ro.GetName(), ro.Summary())
		if ro.GetMessage() != "" {
			msg += ": " + ro.GetMessage()
		}
		if reason != flotillav1.ReasonRolloutDegraded {
			reason = flotillav1.ReasonRolloutProgressed
		}
		if ro.GetPhase() == "Degraded" {
			typ, reason = flotillav1.EventType_EVENT_TYPE_WARNING, flotillav1.ReasonRolloutDegraded
			if m := ro.Measurements(); m != "" {
				msg += "; measurements: " + m
			}
		}
		messages = append(messages, msg)
	}
	var events []*flotillav1.Event
	if reason != "" {
		events = append(events, eventOf(st, typ, reason, strings.Join(messages, "; ")))
	}
	if ev := waveAnalysisEvent(prev, st); ev != nil {
		events = append(events, ev)
	}
	st.ObservedAt = timestamppb.Now()
	w.syncer.putStatus(ctx, st)
	for _, ev := range events {
		w.syncer.deps.Reporter.Event(ctx, ev)
	}
}

func findRollout(list []*flotillav1.RolloutStatus, ro *flotillav1.RolloutStatus) *flotillav1.RolloutStatus {
	for _, r := range list {
		if r.GetNamespace() == ro.GetNamespace() && r.GetName() == ro.GetName() {
			return r
		}
	}
	return nil
}
