package ignore

import (
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func deployment(replicas int64, initContainers ...string) *unstructured.Unstructured {
	var inits []any
	for _, n := range initContainers {
		inits = append(inits, map[string]any{"name": n, "image": n})
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "api", "namespace": "prod"},
		"spec": map[string]any{"replicas": replicas, "template": map[string]any{"spec": map[string]any{
			"initContainers": inits, "containers": []any{map[string]any{"name": "api", "image": "api:1"}}}}},
	}}
	return u
}

func compile(t *testing.T, entries ...*flotillav1.IgnoreDifferences) *Rules {
	t.Helper()
	r, err := Compile(entries)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRemoveIgnoresWhatEachRuleNames(t *testing.T) {
	live := deployment(7, "setup", "injected-sidecar")
	live.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "scale",
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:replicas":{}}}`)}})
	desired := deployment(3, "setup")
	for name, r := range map[string]*Rules{
		"json pointer":   compile(t, &flotillav1.IgnoreDifferences{Group: "apps", Kind: "Deployment", JsonPointers: []string{"/spec/replicas"}, JqPathExpressions: []string{`.spec.template.spec.initContainers[] | select(.name == "injected-sidecar")`}}),
		"fields owner":   compile(t, &flotillav1.IgnoreDifferences{Group: "apps", Kind: "Deployment", ManagedFieldsManagers: []string{"kube-controller-manager"}, JqPathExpressions: []string{`.spec.template.spec.initContainers[] | select(.name == "injected-sidecar")`}}),
		"name and ns ok": compile(t, &flotillav1.IgnoreDifferences{Group: "apps", Kind: "Deployment", Name: "api", Namespace: "prod", JsonPointers: []string{"/spec/replicas"}, JqPathExpressions: []string{`.spec.template.spec.initContainers[] | select(.name == "injected-sidecar")`}}),
	} {
		t.Run(name, func(t *testing.T) {
			a, b := r.Remove(live, live), r.Remove(desired, live)
			if !equal(a, b) {
				t.Errorf("after ignoring, live and desired differ:\n%v\n%v", a.Object["spec"], b.Object["spec"])
			}
			if r, _, _ := unstructured.NestedInt64(live.Object, "spec", "replicas"); r != 7 {
				t.Error("Remove changed its input")
			}
		})
	}
	other := compile(t, &flotillav1.IgnoreDifferences{Group: "apps", Kind: "Deployment", Name: "worker", JsonPointers: []string{"/spec/replicas"}})
	if equal(other.Remove(live, live), other.Remove(desired, live)) {
		t.Error("a rule for another name ignored this object's replicas")
	}
	if got := other.Unmatched([]*unstructured.Unstructured{desired}); len(got) != 1 || !strings.Contains(got[0], "spec.ignoreDifferences[0] (Deployment worker) matches no object") {
		t.Errorf("Unmatched = %v", got)
	}
}

// equal compares the specs (the live object also has managedFields).
func equal(a, b *unstructured.Unstructured) bool {
	return reflect.DeepEqual(a.Object["spec"], b.Object["spec"])
}

func TestRespectKeepsLiveValues(t *testing.T) {
	r := compile(t, &flotillav1.IgnoreDifferences{Group: "apps", Kind: "Deployment", JsonPointers: []string{"/spec/replicas"}})
	desired, live := deployment(3), deployment(7)
	r.Respect(desired, live)
	if n, _, _ := unstructured.NestedInt64(desired.Object, "spec", "replicas"); n != 7 {
		t.Errorf("replicas = %d, want the live 7", n)
	}
}

func TestCompileNamesTheBadField(t *testing.T) {
	for _, tc := range []struct {
		entry *flotillav1.IgnoreDifferences
		want  string
	}{
		{&flotillav1.IgnoreDifferences{Kind: "Deployment", JsonPointers: []string{"spec/replicas"}}, "spec.ignoreDifferences[0].jsonPointers[0]"},
		{&flotillav1.IgnoreDifferences{Kind: "Deployment", JqPathExpressions: []string{".spec[[["}}, "spec.ignoreDifferences[0].jqPathExpressions[0]"},
		{&flotillav1.IgnoreDifferences{JsonPointers: []string{"/spec"}}, "spec.ignoreDifferences[0].kind: is required"},
	} {
		if _, err := Compile([]*flotillav1.IgnoreDifferences{tc.entry}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%v) = %v, want %q", tc.entry, err, tc.want)
		}
	}
}

func FuzzCompileAndRemove(f *testing.F) {
	f.Add("/spec/replicas", `.spec.template.spec.initContainers[] | select(.name == "x")`)
	f.Add("/metadata/labels/a~1b", ".metadata")
	f.Fuzz(func(t *testing.T, pointer, jq string) {
		r, err := Compile([]*flotillav1.IgnoreDifferences{{Group: "apps", Kind: "Deployment", JsonPointers: []string{pointer}, JqPathExpressions: []string{jq}}})
		if err != nil {
			return
		}
		live := deployment(2, "a", "b")
		_ = r.Remove(live, live)
		r.Respect(deployment(1, "a"), live)
	})
}
