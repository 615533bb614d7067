package apply

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// relistDelay is how long a watch whose start-up LIST failed waits before
// it lists again.
const relistDelay = 5 * time.Second

// Watch follows the objects of gvk's resource that match selector (a label
// selector) until ctx ends, calling changed with each added, modified or
// deleted object. Only those objects are streamed and none is cached, so a
// big cluster costs little. The point to watch from is read before Watch
// returns, so every change after it is seen; an expired or ended watch is
// started again from a fresh LIST. It returns the resource it watches, or
// the error of mapping gvk (a kind the cluster does not serve yet).
// changed runs on the watch's goroutine.
func (m *Manager) Watch(ctx context.Context, gvk schema.GroupVersionKind, selector string, log *slog.Logger,
	changed func(watch.EventType, *unstructured.Unstructured)) (schema.GroupVersionResource, error) {
	mapping, err := m.resource(gvk)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	ri := m.dynamic.Resource(mapping.Resource)
	now := func(ctx context.Context) (string, error) {
		list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: selector, Limit: 1})
		if err != nil {
			return "", err
		}
		return list.GetResourceVersion(), nil
	}
	from, _ := now(ctx)
	go func() {
		for ctx.Err() == nil {
			if from == "" {
				var err error
				if from, err = now(ctx); err != nil {
					log.Warn("watch: list", "resource", mapping.Resource.String(), "error", err)
					select {
					case <-ctx.Done():
					case <-time.After(relistDelay):
					}
					continue
				}
			}
			w, err := ri.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: from, AllowWatchBookmarks: true})
			from = ""
			if err != nil {
				log.Warn("watch", "resource", mapping.Resource.String(), "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(relistDelay):
				}
				continue
			}
			for ev := range w.ResultChan() {
				if obj, ok := ev.Object.(*unstructured.Unstructured); ok && ev.Type != watch.Bookmark && ev.Type != watch.Error {
					changed(ev.Type, obj)
				}
			}
			w.Stop()
		}
	}()
	return mapping.Resource, nil
}
