package reconcile

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
)

func TestChangedFieldsNamesLeavesGitSets(t *testing.T) {
	live := map[string]any{"metadata": map[string]any{"name": "x", "resourceVersion": "9", "labels": map[string]any{"a": "1"}},
		"spec": map[string]any{"replicas": int64(1), "template": map[string]any{"image": "b"}}, "status": map[string]any{"ready": true}}
	desired := map[string]any{"metadata": map[string]any{"name": "x", "resourceVersion": "10", "labels": map[string]any{"a": "2"}},
		"spec": map[string]any{"replicas": int64(4), "template": map[string]any{"image": "b"}}, "status": map[string]any{"ready": false}}
	comparable := func(m map[string]any) map[string]any {
		return apply.Comparable(&unstructured.Unstructured{Object: m}).Object
	}
	got := changedFields(comparable(live), comparable(desired), "")
	if want := []string{"metadata.labels.a", "spec.replicas"}; !slices.Equal(got, want) {
		t.Errorf("changedFields = %v, want %v", got, want)
	}
}

func TestForeignChange(t *testing.T) {
	at := func(sec int) *metav1.Time { tm := metav1.NewTime(time.Unix(int64(sec), 0)); return &tm }
	obj := func(fields ...metav1.ManagedFieldsEntry) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetManagedFields(fields)
		return u
	}
	for _, tc := range []struct {
		name    string
		obj     *unstructured.Unstructured
		foreign bool
		manager string
	}{
		{"our own apply", obj(metav1.ManagedFieldsEntry{Manager: "flotilla", Time: at(10)}), false, "an unknown manager"},
		{"a controller's status", obj(metav1.ManagedFieldsEntry{Manager: "flotilla", Time: at(10)}, metav1.ManagedFieldsEntry{Manager: "kcm", Subresource: "status", Time: at(20)}), false, "an unknown manager"},
		{"kubectl edit after us", obj(metav1.ManagedFieldsEntry{Manager: "flotilla", Time: at(10)}, metav1.ManagedFieldsEntry{Manager: "kubectl-edit", Time: at(20)}), true, "kubectl-edit"},
		{"an older edit, then us", obj(metav1.ManagedFieldsEntry{Manager: "kubectl-edit", Time: at(10)}, metav1.ManagedFieldsEntry{Manager: "flotilla", Time: at(20)}), false, "kubectl-edit"},
		{"scale records no time", obj(metav1.ManagedFieldsEntry{Manager: "flotilla", Time: at(10)}, metav1.ManagedFieldsEntry{Manager: "kubectl-scale", Subresource: "scale"}), true, "kubectl-scale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := foreignChange(tc.obj); got != tc.foreign {
				t.Errorf("foreignChange = %t, want %t", got, tc.foreign)
			}
			if got := lastForeignManager(tc.obj); got != tc.manager {
				t.Errorf("lastForeignManager = %q, want %q", got, tc.manager)
			}
		})
	}
}
