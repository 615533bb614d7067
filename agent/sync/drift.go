package sync

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
	ds := d.State
	if w.desired == nil { // applied before the agent started: render it again
		objs, err := s.renderDesired(ctx, ds)
		if err != nil {
			s.log.Error("drift check: render", "app", w.app, "error", err)
			return
		}
		w.desired = byKey(objs)
	}
	var objs []*unstructured.Unstructured
	if refs == nil {
		objs = slices.Collect(maps.Values(w.desired))
	} else {
		for key := range refs {
			if o := w.desired[key]; o != nil {
				objs = append(objs, o)
			}
		}
	}
	if len(objs) == 0 {
		return
	}
	all := slices.Collect(maps.Values(w.desired))
	rules, controller, err := ignoreRules(ds, all)
	if err != nil {
		return // the sync reported it
	}
	drifts, err := s.manager.Diff(ctx, objs, rules)
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
		w.reportDrift(ctx, ds)
		return
	}
	found := make([]string, 0, len(drifts))
	fix := make([]*unstructured.Unstructured, 0, len(drifts))
	for _, dr := range drifts {
		what := describeDrift(dr)
		w.drifted[dr.Ref.Key()] = what
		found = append(found, what)
		// Re-apply Git's object, keeping what the rollouts controller set.
		obj := w.desired[dr.Ref.Key()].DeepCopy()
		controller.Respect(obj, dr.Live)
		fix = append(fix, obj)
	}
	if !ds.GetSyncPolicy().GetAutomated().GetSelfHeal() {
		w.reportDrift(ctx, ds)
		return
	}
	ctx, span := tracer.Start(ctx, "agent.selfheal")
	defer span.End()
	_, err = s.manager.ApplyAll(ctx, fix, replaceOption(ds))
	if err != nil {
		s.log.Error("self-heal failed", "app", w.app, "error", err)
		s.event(ctx, ds, flotillav1.EventType_EVENT_TYPE_WARNING, "SelfHealFailed", fmt.Sprintf("%s; re-applying failed: %v", strings.Join(found, "; "), err))
		w.reportDrift(ctx, ds)
		return
	}
	for _, dr := range drifts {
		delete(w.drifted, dr.Ref.Key())
	}
	if m := s.opts.Metrics; m != nil {
		m.driftCorrected.Add(float64(len(drifts)))
	}
	s.log.Info("drift corrected", "app", w.app, "drift", found)
	s.event(ctx, ds, flotillav1.EventType_EVENT_TYPE_NORMAL, "DriftCorrected", strings.Join(found, "; ")+": re-applied from Git")
}

// reportDrift brings the application's reported sync status in line with
// the drift still outstanding, reporting only changes.
func (w *appWorker) reportDrift(ctx context.Context, ds *flotillav1.DesiredState) {
	s := w.syncer
	summary := strings.Join(slices.Sorted(maps.Values(w.drifted)), "; ")
	if summary == w.driftReported {
		return
	}
	w.driftReported = summary
	prev, err := s.reporter.LastStatus(ctx, ds.GetCluster(), ds.GetApp())
	if err != nil || prev.GetHistoryId() != ds.GetHistoryId() {
		return
	}
	st := proto.Clone(prev).(*flotillav1.AppStatus)
	st.ObservedAt = timestamppb.Now()
	for _, r := range st.GetResources() {
		r.SyncStatus = flotillav1.SyncStatus_SYNC_STATUS_SYNCED
		if _, ok := w.drifted[apply.ObjectRef{Group: r.GetGroup(), Kind: r.GetKind(), Namespace: r.GetNamespace(), Name: r.GetName()}.Key()]; ok {
			r.SyncStatus = flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		}
	}
	if summary == "" {
		st.SyncStatus, st.Message = flotillav1.SyncStatus_SYNC_STATUS_SYNCED, "live objects match Git again"
		_ = s.reporter.PutStatus(ctx, st)
		s.event(ctx, ds, flotillav1.EventType_EVENT_TYPE_NORMAL, "DriftResolved", st.Message)
		return
	}
	st.SyncStatus, st.Message = flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC, "drift: "+summary+" (selfHeal is off: nothing was changed)"
	_ = s.reporter.PutStatus(ctx, st)
	s.event(ctx, ds, flotillav1.EventType_EVENT_TYPE_WARNING, "DriftDetected", summary)
}

// describeDrift is "Deployment.apps/production/api: spec.replicas changed
// by kubectl-scale" or "…: deleted".
func describeDrift(d apply.Drift) string {
	if d.Live == nil {
		return d.Ref.String() + ": deleted"
	}
	fields := changedFields(d.Live.Object, d.Desired.Object, "")
	return fmt.Sprintf("%s: %s changed by %s", d.Ref.String(), strings.Join(fields, ", "), lastForeignManager(d.Live))
}

// changedFields lists the paths where live differs from desired (at most
// five), ignoring the bookkeeping metadata the server sets.
func changedFields(live, desired map[string]any, prefix string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(desired)) {
		path := strings.TrimPrefix(prefix+"."+k, ".")
		switch path {
		case "metadata.managedFields", "metadata.resourceVersion", "metadata.generation", "status":
			continue
		}
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
func (s *Syncer) event(ctx context.Context, ds *flotillav1.DesiredState, typ flotillav1.EventType, reason, message string) {
	s.reporter.Event(ctx, &flotillav1.Event{
		SchemaVersion: 1, Time: timestamppb.Now(), Cluster: ds.GetCluster(), App: ds.GetApp(), Type: typ, Reason: reason,
		Message: message, Revision: ds.GetSource().GetCommit(), HistoryId: ds.GetHistoryId(), Source: "agent", Actor: "agent/" + ds.GetCluster(),
	})
}
