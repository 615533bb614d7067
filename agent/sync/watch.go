package sync

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flotilla-dev/flotilla/agent/apply"
)

// watch starts, once per resource, a watch of the managed objects (those
// with AppLabel) of the kinds among objs. Only the label's objects are
// streamed and none is cached, so a big cluster costs the agent little.
// The resource version to watch from is read before watch returns, so a
// sync that calls it before applying sees every change after its writes.
func (s *Syncer) watch(ctx context.Context, objs []*unstructured.Unstructured) {
	for _, o := range objs {
		mapping, err := s.manager.Mapping(o.GroupVersionKind())
		if err != nil {
			continue // a kind this sync's CRD defines: watched after the sync
		}
		s.mu.Lock()
		known := s.watched[mapping.Resource]
		s.watched[mapping.Resource] = true
		s.mu.Unlock()
		if !known {
			from, _ := s.resourceVersion(ctx, mapping.Resource)
			go s.watchResource(ctx, mapping.Resource, from)
		}
	}
}

// resourceVersion is where a watch of gvr's managed objects starts: now.
func (s *Syncer) resourceVersion(ctx context.Context, gvr schema.GroupVersionResource) (string, error) {
	list, err := s.manager.Dynamic().Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: AppLabel, Limit: 1})
	if err != nil {
		return "", err
	}
	return list.GetResourceVersion(), nil
}

// watchResource follows one resource from resource version from (empty:
// now) until ctx ends, re-listing for a new start whenever the watch ends
// or expires.
func (s *Syncer) watchResource(ctx context.Context, gvr schema.GroupVersionResource, from string) {
	ri := s.manager.Dynamic().Resource(gvr)
	for ctx.Err() == nil {
		if from == "" {
			var err error
			if from, err = s.resourceVersion(ctx, gvr); err != nil {
				s.log.Warn("drift watch: list", "resource", gvr.String(), "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
				continue
			}
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{LabelSelector: AppLabel, ResourceVersion: from, AllowWatchBookmarks: true})
		from = ""
		if err != nil {
			s.log.Warn("drift watch", "resource", gvr.String(), "error", err)
			continue
		}
		for ev := range w.ResultChan() {
			obj, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || (ev.Type != watch.Deleted && (ev.Type != watch.Modified || !foreignChange(obj))) {
				continue // our own writes, controllers' status updates, bookmarks, errors
			}
			if worker := s.worker(obj.GetLabels()[AppLabel]); worker != nil {
				worker.noticeDrift(apply.RefOf(obj))
			}
		}
		w.Stop()
	}
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
