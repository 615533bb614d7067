package apply

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// StartHook creates a hook object (a Job or Pod that runs once) and
// returns it as the server stored it. One with generateName is created
// anew; a named one is server-side applied, after deleting its previous
// run and waiting (at most timeout) for it to be gone when recreate is set
// (Argo CD's BeforeHookCreation). hook is not changed.
func (m *Manager) StartHook(ctx context.Context, hook *unstructured.Unstructured, recreate bool, timeout time.Duration) (*unstructured.Unstructured, error) {
	ref := RefOf(hook)
	ri, _, err := m.client(hook)
	if err != nil {
		return nil, &ObjectError{Ref: ref, Action: "start hook", Err: err}
	}
	obj := hook.DeepCopy()
	if obj.GetName() == "" {
		created, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
		if err != nil {
			return nil, &ObjectError{Ref: ref, Action: "create hook", Err: err}
		}
		return created, nil
	}
	if recreate {
		if _, err := m.DeleteAll(ctx, []ObjectRef{ref}, metav1.DeletePropagationBackground); err != nil {
			return nil, err
		}
		if err := m.WaitDeleted(ctx, []ObjectRef{ref}, timeout); err != nil {
			return nil, err
		}
	}
	applied, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return nil, &ObjectError{Ref: ref, Action: "apply hook", Err: err}
	}
	return applied, nil
}
