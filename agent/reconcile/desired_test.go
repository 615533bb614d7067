package reconcile

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
)

func TestDesiredObjectsGiveBackWhatWasKept(t *testing.T) {
	deployment := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "api", "namespace": "prod", "labels": map[string]any{AppLabel: "api"}},
		"spec":     map[string]any{"replicas": int64(3), "template": map[string]any{"spec": map[string]any{"terminationGracePeriodSeconds": int64(30)}}}}}
	config := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "settings", "namespace": "prod"}, "data": map[string]any{"ratio": "0.5"}}}
	rollout := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": "web", "namespace": "prod"},
		"spec": map[string]any{"strategy": map[string]any{"canary": map[string]any{"canaryService": "web-canary", "stableService": "web-stable",
			"steps": []any{map[string]any{"setWeight": int64(20)}}}}}}}
	objs := []*unstructured.Unstructured{deployment, config, rollout}
	kept, err := keepDesired(objs)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		keys []string
		want []*unstructured.Unstructured
	}{
		{"a full resync asks for all of them", nil, objs},
		{"a drift check asks for the object that changed", []string{apply.RefOf(deployment).Key()}, []*unstructured.Unstructured{deployment}},
		{"an object the desired state does not have is left out", []string{apply.RefOf(config).Key(), apply.ObjectRef{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "prod", Name: "gone"}.Key()}, []*unstructured.Unstructured{config}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kept.objects(tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			// Numbers come back as int64, as rendered, so a comparison
			// with the rendered objects sees no difference.
			if diff := cmp.Diff(apply.ByKey(tc.want), apply.ByKey(got)); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			for _, o := range got {
				o.SetName("changed-by-the-caller")
			}
		})
	}
	again, err := kept.objects([]string{apply.RefOf(deployment).Key()})
	if err != nil {
		t.Fatal(err)
	}
	if got := again[0].GetName(); got != "api" {
		t.Errorf("changing a decoded object changed what is kept: name %q", got)
	}
	// The rollout's Services are written by its controller: those fields
	// are found when the objects are kept, not per drift check.
	if len(kept.controllerFields) == 0 {
		t.Error("no rollouts controller fields kept for the Rollout's Services")
	}
}
