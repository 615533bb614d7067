package apply

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestObjectRef(t *testing.T) {
	cases := []struct {
		name       string
		ref        ObjectRef
		wantString string
		wantKey    string
	}{
		{"namespaced, core group",
			ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "settings"},
			"ConfigMap/shop/settings", "/ConfigMap/shop/settings"},
		{"namespaced, named group",
			ObjectRef{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "shop", Name: "web"},
			"Deployment.apps/shop/web", "apps/Deployment/shop/web"},
		{"cluster-scoped, core group",
			ObjectRef{Version: "v1", Kind: "Namespace", Name: "shop"},
			"Namespace/shop", "/Namespace//shop"},
		{"cluster-scoped, named group",
			ObjectRef{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition", Name: "gadgets.example.com"},
			"CustomResourceDefinition.apiextensions.k8s.io/gadgets.example.com", "apiextensions.k8s.io/CustomResourceDefinition//gadgets.example.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ref.String(); got != tc.wantString {
				t.Errorf("String() = %q, want %q", got, tc.wantString)
			}
			if got := tc.ref.Key(); got != tc.wantKey {
				t.Errorf("Key() = %q, want %q", got, tc.wantKey)
			}
			other := tc.ref
			other.Version = "v1beta1"
			if other.Key() != tc.ref.Key() {
				t.Errorf("Key() depends on the version: %q and %q", other.Key(), tc.ref.Key())
			}
			if diff := cmp.Diff(tc.ref, RefOf(tc.ref.Object())); diff != "" {
				t.Errorf("RefOf(Object()) (-want +got):\n%s", diff)
			}
			objs := Objects([]ObjectRef{tc.ref, other})
			if diff := cmp.Diff([]ObjectRef{tc.ref, other}, Refs(objs)); diff != "" {
				t.Errorf("Refs(Objects()) (-want +got):\n%s", diff)
			}
			if got := ByKey(objs[:1])[tc.ref.Key()]; got != objs[0] {
				t.Errorf("ByKey: %v, want %v", got, objs[0])
			}
		})
	}
}

func TestObjectRefsOfDifferentObjectsDiffer(t *testing.T) {
	refs := []ObjectRef{
		{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "web"},
		{Version: "v1", Kind: "ConfigMap", Namespace: "blog", Name: "web"},
		{Version: "v1", Kind: "ConfigMap", Name: "web"},
		{Version: "v1", Kind: "Secret", Namespace: "shop", Name: "web"},
		{Group: "example.com", Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "web"},
	}
	seen := map[string]ObjectRef{}
	for _, r := range refs {
		if prev, ok := seen[r.Key()]; ok {
			t.Errorf("%s and %s have the same key %q", prev, r, r.Key())
		}
		seen[r.Key()] = r
	}
}

func TestComparable(t *testing.T) {
	// kept is an object with everything Git can set.
	kept := func() map[string]any {
		return map[string]any{
			"apiVersion": "apps/v1",
			"kind":       "Deployment",
			"metadata": map[string]any{
				"name":        "web",
				"namespace":   "shop",
				"labels":      map[string]any{"app": "web"},
				"annotations": map[string]any{"team": "checkout"},
				"finalizers":  []any{"example.com/keep"},
				"ownerReferences": []any{map[string]any{
					"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "owner-uid",
				}},
			},
			"spec": map[string]any{"replicas": int64(2)},
		}
	}
	// with is kept with changes made by set.
	with := func(set func(obj map[string]any, md map[string]any)) *unstructured.Unstructured {
		obj := kept()
		set(obj, obj["metadata"].(map[string]any))
		return &unstructured.Unstructured{Object: obj}
	}
	cases := []struct {
		name string
		in   *unstructured.Unstructured
		want *unstructured.Unstructured
	}{
		{name: "nil is nil"},
		{name: "what Git can set is kept",
			in: with(func(map[string]any, map[string]any) {}), want: with(func(map[string]any, map[string]any) {})},
		{name: "the server's bookkeeping goes",
			in: with(func(_ map[string]any, md map[string]any) {
				md["managedFields"] = []any{map[string]any{"manager": "flotilla", "operation": "Apply"}}
				md["resourceVersion"] = "42"
				md["generation"] = int64(3)
				md["uid"] = "6f1c"
				md["creationTimestamp"] = "2026-01-02T03:04:05Z"
			}),
			want: with(func(map[string]any, map[string]any) {})},
		{name: "status goes",
			in: with(func(obj map[string]any, _ map[string]any) {
				obj["status"] = map[string]any{"readyReplicas": int64(2)}
			}),
			want: with(func(map[string]any, map[string]any) {})},
		{name: "kubectl's last-applied annotation goes, the others stay",
			in: with(func(_ map[string]any, md map[string]any) {
				md["annotations"].(map[string]any)[lastAppliedAnnotation] = `{"kind":"Deployment"}`
			}),
			want: with(func(map[string]any, map[string]any) {})},
		{name: "annotations left empty go",
			in: with(func(_ map[string]any, md map[string]any) {
				md["annotations"] = map[string]any{lastAppliedAnnotation: `{"kind":"Deployment"}`}
			}),
			want: with(func(_ map[string]any, md map[string]any) { delete(md, "annotations") })},
		{name: "a deletion in progress stays",
			in: with(func(_ map[string]any, md map[string]any) {
				md["deletionTimestamp"] = "2026-01-02T03:04:05Z"
			}),
			want: with(func(_ map[string]any, md map[string]any) {
				md["deletionTimestamp"] = "2026-01-02T03:04:05Z"
			})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before *unstructured.Unstructured
			if tc.in != nil {
				before = tc.in.DeepCopy()
			}

			got := Comparable(tc.in)

			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Comparable (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tc.in); diff != "" {
				t.Errorf("Comparable changed its argument (-before +after):\n%s", diff)
			}
		})
	}
}
