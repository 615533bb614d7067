package fleetsim

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/internal/ignore"
)

// clusterScoped are the kinds the Recorder keeps without a namespace.
var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true}

// Recorder is a cluster that keeps what is applied to it: every object
// as applied, so a change is told from a repeat, and live state is what
// was applied (a ConfigMap is Healthy as soon as it exists).
type Recorder struct {
	mu      sync.Mutex
	objects map[string]*unstructured.Unstructured
	writes  int
}

// NewRecorder returns an empty cluster.
func NewRecorder() *Recorder { return &Recorder{objects: map[string]*unstructured.Unstructured{}} }

// Writes counts the objects created, changed or deleted.
func (r *Recorder) Writes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}

// Normalize gives namespaced objects the default namespace.
func (r *Recorder) Normalize(objs []*unstructured.Unstructured, defaultNamespace string) {
	for _, o := range objs {
		switch {
		case clusterScoped[o.GetKind()]:
			o.SetNamespace("")
		case o.GetNamespace() == "":
			o.SetNamespace(defaultNamespace)
		}
	}
}

// ApplyAll records the objects: created, configured or unchanged.
func (r *Recorder) ApplyAll(_ context.Context, objs []*unstructured.Unstructured, _ ...apply.Option) (*apply.ChangeSet, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := &apply.ChangeSet{}
	for _, o := range objs {
		ref := apply.RefOf(o)
		prev, ok := r.objects[ref.Key()]
		action := apply.Unchanged
		switch {
		case !ok:
			action = apply.Created
		case !reflect.DeepEqual(prev.Object, o.Object):
			action = apply.Configured
		}
		if action != apply.Unchanged {
			r.objects[ref.Key()] = o.DeepCopy()
			r.writes++
		}
		cs.Append(apply.Change{Ref: ref, Action: action})
	}
	return cs, nil
}

// Diff reports no drift: nothing else writes to a recorder.
func (r *Recorder) Diff(context.Context, []*unstructured.Unstructured, *ignore.Rules) ([]apply.Drift, error) {
	return nil, nil
}

// Live returns the objects as recorded.
func (r *Recorder) Live(_ context.Context, objs []*unstructured.Unstructured) (map[string]*unstructured.Unstructured, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		key := apply.RefOf(o).Key()
		if live, ok := r.objects[key]; ok {
			out[key] = live.DeepCopy()
		}
	}
	return out, nil
}

// DeleteAll forgets the objects.
func (r *Recorder) DeleteAll(_ context.Context, refs []apply.ObjectRef, _ metav1.DeletionPropagation, _ ...apply.DeleteOption) (*apply.ChangeSet, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := &apply.ChangeSet{}
	for _, ref := range refs {
		if _, ok := r.objects[ref.Key()]; ok {
			delete(r.objects, ref.Key())
			r.writes++
		}
		cs.Append(apply.Change{Ref: ref, Action: apply.Pruned})
	}
	return cs, nil
}

// WaitDeleted returns at once: deletions are immediate.
func (r *Recorder) WaitDeleted(context.Context, []apply.ObjectRef, time.Duration) error { return nil }

// StartHook records the hook and returns it.
func (r *Recorder) StartHook(ctx context.Context, hook *unstructured.Unstructured, _ bool, _ time.Duration) (*unstructured.Unstructured, error) {
	_, err := r.ApplyAll(ctx, []*unstructured.Unstructured{hook})
	return hook, err
}

// Watch sees no change: nothing else writes to a recorder.
func (r *Recorder) Watch(_ context.Context, gvk schema.GroupVersionKind, _ string, _ *slog.Logger, _ func(watch.EventType, *unstructured.Unstructured)) (schema.GroupVersionResource, error) {
	return gvk.GroupVersion().WithResource(gvk.Kind), nil
}

// Inventories keep the applications' inventories in memory.
type Inventories struct {
	mu   sync.Mutex
	apps map[string]inventory.Inventory
}

// NewInventories returns an empty store.
func NewInventories() *Inventories { return &Inventories{apps: map[string]inventory.Inventory{}} }

// Load returns app's inventory, empty when there is none.
func (s *Inventories) Load(_ context.Context, app string) (*inventory.Inventory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv, ok := s.apps[app]
	if !ok {
		return &inventory.Inventory{App: app}, nil
	}
	inv.Objects = append([]apply.ObjectRef(nil), inv.Objects...)
	return &inv, nil
}

// Save keeps inv.
func (s *Inventories) Save(_ context.Context, inv *inventory.Inventory) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *inv
	c.Objects = append([]apply.ObjectRef(nil), inv.Objects...)
	s.apps[inv.App] = c
	return nil
}
