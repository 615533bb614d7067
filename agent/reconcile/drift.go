package reconcile

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/waves"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// checkDrift compares the live objects among refs (all of the current
// desired state's when refs is nil) with what applying them would make
// them, by server-side dry-run. So only fields Git sets count: a change an
// HPA makes to replicas a chart leaves unset is no drift. With selfHeal the
// drifted objects are re-applied at once; without, the application turns
// OutOfSync. Either way each drift is an event naming the object, the
// fields and the manager that changed them.
func (w *appWorker) checkDrift(ctx context.Context, refs map[string]apply.ObjectRef) {
	s := w.syncer
	d := w.latest()
	w.mu.Lock()
	newer := w.pending != nil
	w.mu.Unlock()
	if d == nil || newer || !w.synced || d.State.GetDeletion() != nil {
		return // nothing applied to drift from, or a sync is coming anyway
	}
	spec := newSyncSpec(d.State)
	if w.desired == nil { // applied before the agent started: render it again
		objs, err := s.renderDesired(ctx, spec)
		if err != nil {
			s.log.Error("drift check: render", "app", w.app, "error", err)
			return
		}
		// Hooks run once per sync; they are not compared.
		plan, err := waves.Build(objs)
		if err != nil {
			s.log.Error("drift check: plan", "app", w.app, "error", err)
			return
		}
		desired, err := keepDesired(plan.Resources)
		if err != nil {
			s.log.Error("drift check", "app", w.app, "error", err)
			return
		}
		w.desired = desired
		s.want(spec, plan.Resources)
	}
	var keys []string // nil: all of them
	if refs != nil {
		keys = slices.Collect(maps.Keys(refs))
	}
	objs, err := w.desired.objects(keys)
	if err != nil {
		s.log.Error("drift check", "app", w.app, "error", err)
		return
	}
	if len(objs) == 0 {
		return
	}
	rules, controller, err := ignoreRulesOf(spec, w.desired.controllerFields)
	if err != nil {
		return // the sync reported it
	}
	drifts, err := s.deps.Cluster.Diff(ctx, objs, rules)
	if err != nil {
		s.log.Error("drift check", "app", w.app, "error", err)
		return
	}
	if refs == nil {
		clear(w.drifted)
	} else {
		for key := range refs {
			delete(w.drifted, key)
		}
	}
	if len(drifts) == 0 {
		w.reportDrift(ctx, spec)
		return
	}
	byKey := apply.ByKey(objs) // decoded for this check: the fix may change them
	found := make([]string, 0, len(drifts))
	fix := make([]*unstructured.Unstructured, 0, len(drifts))
	for _, dr := range drifts {
		what := describeDrift(dr)
		w.drifted[dr.Ref.Key()] = what
		found = append(found, what)
		// Re-apply Git's object, keeping what the rollouts controller set.
		obj := byKey[dr.Ref.Key()]
		controller.Respect(obj, dr.Live)
		fix = append(fix, obj)
	}
	if !spec.selfHeal {
		w.reportDrift(ctx, spec)
		return
	}
	ctx, span := tracer.Start(ctx, "agent.selfheal")
	defer span.End()
	_, err = s.deps.Cluster.ApplyAll(ctx, fix, spec.applyOptions()...)
	if err != nil {
		s.log.Error("self-heal failed", "app", w.app, "error", err)
		s.event(ctx, spec, flotillav1.EventType_EVENT_TYPE_WARNING, flotillav1.ReasonSelfHealFailed, fmt.Sprintf("%s; re-applying failed: %v", strings.Join(found, "; "), err))
		w.reportDrift(ctx, spec)
		return
	}
	for _, dr := range drifts {
		delete(w.drifted, dr.Ref.Key())
	}
	if m := s.opts.Metrics; m != nil {
		m.driftCorrected.Add(float64(len(drifts)))
	}
	s.log.Info("drift corrected", "app", w.app, "drift", found)
	s.event(ctx, spec, flotillav1.EventType_EVENT_TYPE_NORMAL, flotillav1.ReasonDriftCorrected, strings.Join(found, "; ")+": re-applied from Git")
}

// reportDrift brings the application's reported sync status in line with
// the drift still outstanding, reporting only changes.
func (w *appWorker) reportDrift(ctx context.Context, spec syncSpec) {
	s := w.syncer
	summary := strings.Join(slices.Sorted(maps.Values(w.drifted)), "; ")
	if summary == w.driftReported {
		return
	}
	w.driftReported = summary
	prev, err := s.deps.Reporter.LastStatus(ctx, spec.cluster, spec.app)
	if err != nil || prev.GetHistoryId() != spec.historyID {
		return
	}
	st := proto.Clone(prev).(*flotillav1.AppStatus)
	st.ObservedAt = timestamppb.Now()
	for _, r := range st.GetResources() {
		r.SyncStatus = flotillav1.SyncStatus_SYNC_STATUS_SYNCED
		if _, ok := w.drifted[refOfStatus(r).Key()]; ok {
			r.SyncStatus = flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		}
	}
	if summary == "" {
		st.SyncStatus, st.Message = flotillav1.SyncStatus_SYNC_STATUS_SYNCED, "live objects match Git again"
		s.putStatus(ctx, st)
		s.event(ctx, spec, flotillav1.EventType_EVENT_TYPE_NORMAL, flotillav1.ReasonDriftResolved, st.Message)
		return
	}
	st.SyncStatus, st.Message = flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC, "drift: "+summary+" (selfHeal is off: nothing was changed)"
	s.putStatus(ctx, st)
	s.event(ctx, spec, flotillav1.EventType_EVENT_TYPE_WARNING, flotillav1.ReasonDriftDetected, summary)
}

// describeDrift is "Deployment.apps/production/api: spec.replicas changed
// by kubectl-scale" or "…: deleted".
func describeDrift(d apply.Drift) string {
	if d.Live == nil {
		return d.Ref.String() + ": deleted"
	}
	fields := changedFields(apply.Comparable(d.Live).Object, apply.Comparable(d.Desired).Object, "")
	return fmt.Sprintf("%s: %s changed by %s", d.Ref.String(), strings.Join(fields, ", "), lastForeignManager(d.Live))
}

// changedFields lists the paths where live differs from desired (at most
// five); the callers pass apply.Comparable copies.
func changedFields(live, desired map[string]any, prefix string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(desired)) {
		path := strings.TrimPrefix(prefix+"."+k, ".")
		a, b := live[k], desired[k]
		if reflect.DeepEqual(a, b) {
			continue
		}
		am, aok := a.(map[string]any)
		bm, bok := b.(map[string]any)
		if aok && bok {
			out = append(out, changedFields(am, bm, path)...)
		} else {
			out = append(out, path)
		}
		if len(out) >= 5 {
			return out[:5]
		}
	}
	return out
}

// event records an event about the application's current desired state.
func (s *Syncer) event(ctx context.Context, spec syncSpec, typ flotillav1.EventType, reason, message string) {
	s.deps.Reporter.Event(ctx, &flotillav1.Event{
		SchemaVersion: 1, Time: timestamppb.Now(), Cluster: spec.cluster, App: spec.app, Type: typ, Reason: reason,
		Message: message, Revision: spec.revision, HistoryId: spec.historyID, Source: "agent", Actor: "agent/" + spec.cluster,
	})
}

// putStatus writes st, logging a failure.
func (s *Syncer) putStatus(ctx context.Context, st *flotillav1.AppStatus) {
	if err := s.deps.Reporter.PutStatus(ctx, st); err != nil {
		s.log.Error("report status", "app", st.GetApp(), "error", err)
	}
}
