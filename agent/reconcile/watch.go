package reconcile

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flotilla-dev/flotilla/agent/apply"
)

// watch starts, once per kind, a watch of the managed objects (those with
// AppLabel) of the kinds among objs. The point to watch from is fixed
// before watch returns, so a sync that calls it before applying sees every
// change after its writes. A kind the cluster does not serve yet (its CRD
// comes with this sync) is watched after the sync.
func (s *Syncer) watch(ctx context.Context, objs []*unstructured.Unstructured) {
	for _, o := range objs {
		gk := o.GroupVersionKind().GroupKind()
		s.mu.Lock()
		known := s.watched[gk]
		s.watched[gk] = true
		s.mu.Unlock()
		if known {
			continue
		}
		if _, err := s.deps.Cluster.Watch(ctx, o.GroupVersionKind(), AppLabel, s.log, s.noticeChange); err != nil {
			s.mu.Lock()
			delete(s.watched, gk)
			s.mu.Unlock()
		}
	}
}

// noticeChange hands a watched object's change to its application's
// worker: every change may change its health, and a deletion or a change
// by someone else may be drift.
func (s *Syncer) noticeChange(typ watch.EventType, obj *unstructured.Unstructured) {
	worker := s.worker(s.labelledApp(obj))
	if worker == nil {
		return
	}
	worker.noticeChange()
	if typ != watch.Deleted && (typ != watch.Modified || !foreignChange(obj)) {
		return // our own writes, controllers' status updates
	}
	worker.noticeDrift(apply.RefOf(obj))
}

// foreignChange reports whether an object's newest change may be drift:
// made by a field manager other than the agent, to the object itself
// rather than its status. Some writes record no time (the scale
// subresource): those always count, and the dry-run decides.
func foreignChange(obj *unstructured.Unstructured) bool {
	var newest time.Time
	for _, f := range obj.GetManagedFields() {
		if f.Time != nil && f.Time.After(newest) {
			newest = f.Time.Time
		}
	}
	for _, f := range obj.GetManagedFields() {
		if f.Manager != apply.FieldManager && f.Subresource != "status" && (f.Time == nil || f.Time.Time.Equal(newest)) {
			return true
		}
	}
	return false
}

// lastForeignManager names the field manager that changed obj last,
// other than the agent and status writers; one with no time counts as
// the newest.
func lastForeignManager(obj *unstructured.Unstructured) string {
	manager, newest := "", time.Time{}
	for _, f := range obj.GetManagedFields() {
		if f.Manager == apply.FieldManager || f.Subresource == "status" {
			continue
		}
		if f.Time == nil {
			return f.Manager
		}
		if manager == "" || f.Time.After(newest) {
			manager, newest = f.Manager, f.Time.Time
		}
	}
	if manager == "" {
		return "an unknown manager"
	}
	return manager
}
