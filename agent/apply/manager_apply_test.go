package apply

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

// changes is cs as (ref, action) pairs, messages left out.
func changes(cs *ChangeSet) []Change {
	if cs == nil {
		return nil
	}
	out := make([]Change, len(cs.Changes))
	for i, c := range cs.Changes {
		out[i] = Change{Ref: c.Ref, Action: c.Action}
	}
	return out
}

// expected is the change set of objs with one action each, in order.
func expected(objs []*unstructured.Unstructured, actions ...Action) []Change {
	out := make([]Change, len(objs))
	for i, o := range objs {
		out[i] = Change{Ref: RefOf(o), Action: actions[i]}
	}
	return out
}

func TestApplyAllCreatesThenLeavesAloneThenConfigures(t *testing.T) {
	ns := newNamespace(t)
	m, requests := recordingManager(t)
	const v1 = `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: $NS}
data: {mode: fast}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS}
spec:
  ports: [{port: 80}]
`
	const v2 = `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: $NS}
data: {mode: safe}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS}
spec:
  ports: [{port: 80}]
`
	steps := []struct {
		name      string
		manifests string
		want      []Action
	}{
		{"new objects are created", v1, []Action{Created, Created}},
		{"the same objects again are unchanged and not written", v1, []Action{Unchanged, Unchanged}},
		{"a changed object is configured, the other left alone", v2, []Action{Configured, Unchanged}},
	}
	// The steps build on each other, so they are one test, not subtests.
	for _, step := range steps {
		objs := decode(t, ns, step.manifests)
		before := map[string]string{}
		for _, o := range objs {
			if live := getLive(t, RefOf(o)); live != nil {
				before[RefOf(o).Key()] = live.GetResourceVersion()
			}
		}
		requests.reset()

		cs, err := m.ApplyAll(t.Context(), objs)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}

		if diff := cmp.Diff(expected(objs, step.want...), changes(cs)); diff != "" {
			t.Errorf("%s: change set (-want +got):\n%s", step.name, diff)
		}
		wantWrites := 0
		for i, o := range objs {
			live := getLive(t, RefOf(o))
			if live == nil {
				t.Fatalf("%s: %s does not exist", step.name, RefOf(o))
			}
			if step.want[i] == Unchanged {
				if rv := live.GetResourceVersion(); rv != before[RefOf(o).Key()] {
					t.Errorf("%s: %s was written: resourceVersion %s, was %s", step.name, RefOf(o), rv, before[RefOf(o).Key()])
				}
				continue
			}
			wantWrites++
			if diff := cmp.Diff(o.Object["data"], live.Object["data"]); diff != "" {
				t.Errorf("%s: data of %s (-want +got):\n%s", step.name, RefOf(o), diff)
			}
		}
		if writes := requests.writes(); len(writes) != wantWrites {
			t.Errorf("%s: %d writes, want %d: %v", step.name, len(writes), wantWrites, writes)
		}
		if cs.Writes() != wantWrites {
			t.Errorf("%s: ChangeSet.Writes() = %d, want %d", step.name, cs.Writes(), wantWrites)
		}
	}
}

func TestApplyAllFailingDryRunWritesNothing(t *testing.T) {
	ns := newNamespace(t)
	m, requests := recordingManager(t)
	existing := decode(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: existing, namespace: $NS}
data: {mode: fast}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: same, namespace: $NS}
data: {mode: fast}
`)
	mustApply(t, existing...)
	objs := decode(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: existing, namespace: $NS}
data: {mode: safe}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: bad-key, namespace: $NS}
data: {"not a key!": x}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: fresh, namespace: $NS}
data: {mode: fast}
---
apiVersion: v1
kind: Service
metadata: {name: bad-port, namespace: $NS}
spec:
  ports: [{port: 0}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: same, namespace: $NS}
data: {mode: fast}
`)
	failing := []ObjectRef{RefOf(objs[1]), RefOf(objs[3])}
	requests.reset()

	cs, err := m.ApplyAll(t.Context(), objs)

	if err == nil {
		t.Fatal("ApplyAll succeeded, want the dry-run to fail")
	}
	byString := cmpopts.SortSlices(func(a, b ObjectRef) bool { return a.String() < b.String() })
	if diff := cmp.Diff(failing, objectErrorRefs(err), byString); diff != "" {
		t.Errorf("objects named by the error (-want +got):\n%s", diff)
	}
	for _, ref := range failing {
		if !strings.Contains(err.Error(), ref.String()+" dry-run failed") {
			t.Errorf("error does not say %s failed its dry-run: %v", ref, err)
		}
	}
	if writes := requests.writes(); len(writes) != 0 {
		t.Errorf("a failed dry-run wrote: %v", writes)
	}
	if got := getLive(t, RefOf(existing[0])); fieldOf(got, "data", "mode") != "fast" {
		t.Errorf("the existing object was changed: %v", got)
	}
	if got := getLive(t, RefOf(objs[2])); got != nil {
		t.Errorf("a new object of the failed set was created: %v", got)
	}
	// Nothing was written, so nothing may be reported as written: every
	// object that needed a write failed (its own dry-run, or the set's), and
	// one that already matches is unchanged.
	if cs.Writes() != 0 {
		t.Errorf("ChangeSet.Writes() = %d after a failed dry-run, want 0: %+v", cs.Writes(), cs.Changes)
	}
	if diff := cmp.Diff(expected(objs, Failed, Failed, Failed, Failed, Unchanged), changes(cs)); diff != "" {
		t.Errorf("change set (-want +got):\n%s", diff)
	}
	for _, c := range cs.Changes {
		if c.Action == Failed && c.Message == "" {
			t.Errorf("%s failed without a message", c.Ref)
		}
	}
}

func TestApplyAllCRDAndItsCustomResourceInOneSet(t *testing.T) {
	ns := newNamespace(t)
	// The custom resource comes first: the CRD must still be applied, and
	// established, before it.
	objs := decode(t, ns, `
apiVersion: apply.flotilla.test/v1
kind: Gadget
metadata: {name: g1, namespace: $NS}
spec: {size: 3}
---
`+crdManifest("apply.flotilla.test", "Gadget", "Namespaced"))

	cs := mustApply(t, objs...)

	if diff := cmp.Diff(expected(objs, Created, Created), changes(cs)); diff != "" {
		t.Errorf("change set (-want +got):\n%s", diff)
	}
	if live := getLive(t, RefOf(objs[0])); fieldOf(live, "spec", "size") != "3" {
		t.Errorf("custom resource: %v", live)
	}
	if diff := cmp.Diff(expected(objs, Unchanged, Unchanged), changes(mustApply(t, objs...))); diff != "" {
		t.Errorf("applied again: change set (-want +got):\n%s", diff)
	}
}

func TestApplyAllNamespaceAndItsObjectsInOneSet(t *testing.T) {
	ns := uniqueName(t) // created by the set
	objs := decode(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: $NS}
data: {mode: fast}
---
apiVersion: v1
kind: Namespace
metadata: {name: $NS}
`)

	cs := mustApply(t, objs...)

	if diff := cmp.Diff(expected(objs, Created, Created), changes(cs)); diff != "" {
		t.Errorf("change set (-want +got):\n%s", diff)
	}
	if getLive(t, RefOf(objs[0])) == nil {
		t.Errorf("%s was not created", RefOf(objs[0]))
	}
	if diff := cmp.Diff(expected(objs, Unchanged, Unchanged), changes(mustApply(t, objs...))); diff != "" {
		t.Errorf("applied again: change set (-want +got):\n%s", diff)
	}
}

func TestApplyAllReplace(t *testing.T) {
	ns := newNamespace(t)
	// Another manager created the object with a field Git does not set, and
	// a value Git changes.
	const theirs = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: $NAME
  namespace: $NS
  labels: {set-by: them}
data: {mode: fast, extra: theirs}
`
	const ours = `
apiVersion: v1
kind: ConfigMap
metadata: {name: $NAME, namespace: $NS}
data: {mode: safe}
`
	cases := []struct {
		name       string
		existing   bool
		replace    bool
		wantAction Action
		wantData   map[string]any
		wantLabels map[string]string
	}{
		{name: "server-side apply keeps another manager's fields", existing: true, replace: false,
			wantAction: Configured, wantData: map[string]any{"mode": "safe", "extra": "theirs"}, wantLabels: map[string]string{"set-by": "them"}},
		{name: "replace writes the object whole", existing: true, replace: true,
			wantAction: Configured, wantData: map[string]any{"mode": "safe"}},
		{name: "replace creates what does not exist", existing: false, replace: true,
			wantAction: Created, wantData: map[string]any{"mode": "safe"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := uniqueName(t)
			if tc.existing {
				obj := decodeOne(t, ns, strings.ReplaceAll(theirs, "$NAME", name))
				ri, err := manager.Client(obj)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ri.Create(t.Context(), obj, metav1.CreateOptions{FieldManager: "someone-else"}); err != nil {
					t.Fatal(err)
				}
			}
			obj := decodeOne(t, ns, strings.ReplaceAll(ours, "$NAME", name))

			cs, err := manager.ApplyAll(t.Context(), []*unstructured.Unstructured{obj},
				Replace(func(*unstructured.Unstructured) bool { return tc.replace }))
			if err != nil {
				t.Fatal(err)
			}

			if diff := cmp.Diff(expected([]*unstructured.Unstructured{obj}, tc.wantAction), changes(cs)); diff != "" {
				t.Errorf("change set (-want +got):\n%s", diff)
			}
			live := getLive(t, RefOf(obj))
			if diff := cmp.Diff(tc.wantData, live.Object["data"]); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantLabels, live.GetLabels(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApplyAllSkipDryRunOnMissingResource: with Argo CD's
// SkipDryRunOnMissingResource=true, an object of a kind the cluster does
// not know yet does not hold up the rest: they are applied, and it is
// applied last, failing alone while its CRD is missing and landing once
// the CRD exists. Without the option the dry-run fails and writes nothing.
func TestApplyAllSkipDryRunOnMissingResource(t *testing.T) {
	ns := newNamespace(t)
	group := "skip-" + ns + ".example.com"
	objs := decode(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: $NS}
data: {mode: fast}
---
apiVersion: `+group+`/v1
kind: Widget
metadata: {name: w, namespace: $NS}
spec: {size: 3}
`)
	m := manager
	if _, err := m.ApplyAll(t.Context(), objs); err == nil || getLive(t, RefOf(objs[0])) != nil {
		t.Fatalf("without the option: err %v, and the ConfigMap must not be written", err)
	}
	skip := SkipDryRunOnMissingResource(func(o *unstructured.Unstructured) bool { return o.GetKind() == "Widget" })
	cs, err := m.ApplyAll(t.Context(), objs, skip)
	if err == nil || !strings.Contains(err.Error(), RefOf(objs[1]).String()) {
		t.Fatalf("err = %v, want the Widget's apply to fail alone", err)
	}
	if getLive(t, RefOf(objs[0])) == nil {
		t.Error("the ConfigMap was held up by the Widget")
	}
	if diff := cmp.Diff(expected(objs, Created, Failed), changes(cs)); diff != "" {
		t.Errorf("change set (-want +got):\n%s", diff)
	}

	crd := decode(t, ns, crdManifest(group, "Widget", "Namespaced"))
	if _, err := m.ApplyAll(t.Context(), crd); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := m.ApplyAll(t.Context(), objs, skip)
		return err
	})
	if getLive(t, RefOf(objs[1])) == nil {
		t.Error("the Widget did not land once its CRD existed")
	}
}
