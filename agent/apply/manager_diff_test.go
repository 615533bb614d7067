package apply

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/internal/ignore"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func TestDiff(t *testing.T) {
	ns := newNamespace(t)
	m, requests := recordingManager(t)
	obj := decodeOne(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: $NS}
data: {mode: fast, level: "1"}
`)
	mustApply(t, obj)
	requests.reset()

	drifts, err := m.Diff(t.Context(), []*unstructured.Unstructured{obj}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(drifts) != 0 {
		t.Errorf("drift right after apply: %+v", drifts)
	}

	// Someone changes a field Git sets.
	edited := getLive(t, RefOf(obj))
	if err := unstructured.SetNestedField(edited.Object, "slow", "data", "mode"); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Dynamic.Resource(configMaps).Namespace(ns).Update(t.Context(), edited, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	requests.reset()

	cases := []struct {
		name      string
		ignore    []*flotillav1.IgnoreDifferences
		wantDrift bool
	}{
		{name: "no rules: the change is a drift", wantDrift: true},
		{name: "a JSON pointer to the changed field hides it",
			ignore: []*flotillav1.IgnoreDifferences{{Kind: "ConfigMap", JsonPointers: []string{"/data/mode"}}}},
		{name: "a jq path to the changed field hides it",
			ignore: []*flotillav1.IgnoreDifferences{{Kind: "ConfigMap", JqPathExpressions: []string{".data.mode"}}}},
		{name: "a rule for another field does not hide it", wantDrift: true,
			ignore: []*flotillav1.IgnoreDifferences{{Kind: "ConfigMap", JsonPointers: []string{"/data/level"}}}},
		{name: "a rule for another object does not hide it", wantDrift: true,
			ignore: []*flotillav1.IgnoreDifferences{{Kind: "ConfigMap", Name: "other", JsonPointers: []string{"/data/mode"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := ignore.Compile(tc.ignore)
			if err != nil {
				t.Fatal(err)
			}

			drifts, err := m.Diff(t.Context(), []*unstructured.Unstructured{obj}, rules)
			if err != nil {
				t.Fatal(err)
			}

			if !tc.wantDrift {
				if len(drifts) != 0 {
					t.Errorf("drifts %+v, want none", drifts)
				}
				return
			}
			if len(drifts) != 1 {
				t.Fatalf("%d drifts, want 1: %+v", len(drifts), drifts)
			}
			d := drifts[0]
			if d.Ref != RefOf(obj) {
				t.Errorf("drift of %s, want %s", d.Ref, RefOf(obj))
			}
			if got := fieldOf(d.Live, "data", "mode"); got != "slow" {
				t.Errorf("Live data.mode = %q, want the edited %q", got, "slow")
			}
			if got := fieldOf(d.Desired, "data", "mode"); got != "fast" {
				t.Errorf("Desired data.mode = %q, want Git's %q", got, "fast")
			}
		})
	}
	if writes := requests.writes(); len(writes) != 0 {
		t.Errorf("Diff wrote: %v", writes)
	}
	if got := fieldOf(getLive(t, RefOf(obj)), "data", "mode"); got != "slow" {
		t.Errorf("after Diff data.mode = %q, want the edit left alone", got)
	}
}

// TestDiffOfWhatCannotBeDryRunYet: objects whose namespace or kind the same
// sync creates are drifts with what Git says, and no live state; an object
// of a kind nothing serves or defines fails the diff, naming it.
func TestDiffOfWhatCannotBeDryRunYet(t *testing.T) {
	const unknown = `
apiVersion: diff.flotilla.test/v1
kind: Unknown
metadata: {name: u1, namespace: $NS}
`
	const crd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: unknowns.diff.flotilla.test}
spec:
  group: diff.flotilla.test
  names: {kind: Unknown, plural: unknowns}
  scope: Namespaced
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]
`
	cases := []struct {
		name     string
		manifest string
		with     string // more objects of the same set
	}{
		{"its namespace does not exist", `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: $NS}
data: {mode: fast}
`, ""},
		{"its kind is defined by a CRD of the same set", unknown, crd},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := decodeOne(t, uniqueName(t), tc.manifest)
			objs := []*unstructured.Unstructured{obj}
			if tc.with != "" {
				objs = append(objs, decodeOne(t, "", tc.with))
			}

			drifts, err := manager.Diff(t.Context(), objs, nil)
			if err != nil {
				t.Fatal(err)
			}

			if diff := cmp.Diff(Drift{Ref: RefOf(obj), Desired: obj}, drifts[0]); diff != "" {
				t.Errorf("drift (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("its kind is neither served nor defined", func(t *testing.T) {
		obj := decodeOne(t, uniqueName(t), unknown)
		_, err := manager.Diff(t.Context(), []*unstructured.Unstructured{obj}, nil)
		var oe *ObjectError
		if !errors.As(err, &oe) || oe.Ref != RefOf(obj) || !strings.Contains(err.Error(), `no matches for kind "Unknown"`) {
			t.Fatalf("diff of an object nothing serves: %v", err)
		}
	})
}

func TestDiffFailsNamingEveryRefusedObject(t *testing.T) {
	ns := newNamespace(t)
	objs := decode(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: fine, namespace: $NS}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: bad-key, namespace: $NS}
data: {"not a key!": x}
---
apiVersion: v1
kind: Service
metadata: {name: bad-port, namespace: $NS}
spec:
  ports: [{port: 0}]
`)

	drifts, err := manager.Diff(t.Context(), objs, nil)

	if err == nil {
		t.Fatalf("Diff succeeded with %+v, want the refused dry-runs named", drifts)
	}
	if diff := cmp.Diff([]ObjectRef{RefOf(objs[1]), RefOf(objs[2])}, objectErrorRefs(err)); diff != "" {
		t.Errorf("objects named by the error (-want +got):\n%s", diff)
	}
}

// TestLiveReadsFewByGetAndManyByList: Live reads a kind and namespace with
// few objects with a GET each and one with many with a LIST, and both ways
// give the same.
func TestLiveReadsFewByGetAndManyByList(t *testing.T) {
	ns := newNamespace(t)
	var manifests strings.Builder
	for i := range fewObjects + 2 {
		fmt.Fprintf(&manifests, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d, namespace: $NS}\ndata: {i: %q}\n", i, fmt.Sprint(i))
	}
	existing := decode(t, ns, manifests.String())
	mustApply(t, existing...)
	missing := decodeOne(t, ns, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: missing, namespace: $NS}\n")
	all := append(append([]*unstructured.Unstructured{}, existing...), missing)
	m, requests := recordingManager(t)
	collection := "/api/v1/namespaces/" + ns + "/configmaps"
	lists := func(r request) bool { return r.Method == "GET" && r.Path == collection }
	gets := func(r request) bool { return r.Method == "GET" && strings.HasPrefix(r.Path, collection+"/") }

	// One call for all: a LIST.
	requests.reset()
	listed, err := m.Live(t.Context(), all)
	if err != nil {
		t.Fatal(err)
	}
	if n, g := len(requests.matching(lists)), len(requests.matching(gets)); n != 1 || g != 0 {
		t.Errorf("Live of %d objects made %d LISTs and %d GETs, want 1 LIST", len(all), n, g)
	}

	// A call per few objects: GETs.
	requests.reset()
	got := map[string]*unstructured.Unstructured{}
	for start := 0; start < len(all); start += fewObjects {
		part, err := m.Live(t.Context(), all[start:min(start+fewObjects, len(all))])
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range part {
			got[k] = v
		}
	}
	if n, g := len(requests.matching(lists)), len(requests.matching(gets)); n != 0 || g != len(all) {
		t.Errorf("Live in parts of at most %d made %d LISTs and %d GETs, want %d GETs", fewObjects, n, g, len(all))
	}

	if diff := cmp.Diff(listed, got); diff != "" {
		t.Errorf("LIST and GET disagree (-list +get):\n%s", diff)
	}
	if len(got) != len(existing) {
		t.Errorf("Live found %d objects, want the %d that exist", len(got), len(existing))
	}
	for _, o := range existing {
		if l := got[RefOf(o).Key()]; fieldOf(l, "data", "i") != fieldOf(o, "data", "i") {
			t.Errorf("Live of %s: %v", RefOf(o), l)
		}
	}
	if l, ok := got[RefOf(missing).Key()]; ok {
		t.Errorf("Live has an object that does not exist: %v", l)
	}
}
