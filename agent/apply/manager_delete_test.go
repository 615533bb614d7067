package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

func TestDeleteAll(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name   string
		ref    ObjectRef
		exists bool
		want   Action
	}{
		{name: "an object is deleted", exists: true, want: Pruned,
			ref: ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: ns, Name: "there"}},
		{name: "an object already gone counts as deleted", want: Pruned,
			ref: ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: ns, Name: "gone"}},
		{name: "a kind the server does not know fails", want: Failed,
			ref: ObjectRef{Group: "delete.flotilla.test", Version: "v1", Kind: "Unknown", Namespace: ns, Name: "u1"}},
		{name: "a cluster-scoped object is deleted", exists: true, want: Pruned,
			ref: ObjectRef{Version: "v1", Kind: "Namespace", Name: uniqueName(t)}},
	}
	var refs []ObjectRef
	var wantChanges []Change
	var wantFailed []ObjectRef
	for _, tc := range cases {
		if tc.exists {
			mustApply(t, tc.ref.Object())
		}
		refs = append(refs, tc.ref)
		wantChanges = append(wantChanges, Change{Ref: tc.ref, Action: tc.want})
		if tc.want == Failed {
			wantFailed = append(wantFailed, tc.ref)
		}
	}

	cs, err := manager.DeleteAll(t.Context(), refs, metav1.DeletePropagationBackground)

	if diff := cmp.Diff(wantChanges, changes(cs)); diff != "" {
		t.Errorf("change set (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantFailed, objectErrorRefs(err)); diff != "" {
		t.Errorf("objects named by the error (-want +got):\n%s", diff)
	}
	for i, tc := range cases {
		if tc.want == Failed {
			if !strings.Contains(fmt.Sprint(err), tc.ref.String()+" delete failed") {
				t.Errorf("%s: error does not name %s: %v", tc.name, tc.ref, err)
			}
			if i < len(cs.Changes) && cs.Changes[i].Message == "" {
				t.Errorf("%s: the failed change has no message", tc.name)
			}
			continue
		}
		// A Namespace stays Terminating without kube-controller-manager.
		if live := getLive(t, tc.ref); live != nil && live.GetDeletionTimestamp() == nil {
			t.Errorf("%s: %s is still there", tc.name, tc.ref)
		}
	}
}

// TestDeleteAllIfUnchanged deletes what was decided from a read only while
// the object is still as read: one another application took over in
// between (its label rewritten) stays.
func TestDeleteAllIfUnchanged(t *testing.T) {
	ns := newNamespace(t)
	object := func(name, app string) *unstructured.Unstructured {
		return decodeOne(t, ns, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+name+", namespace: $NS, labels: {flotilla.dev/app: "+app+"}}\n")
	}
	taken, still, gone := object("taken", "a"), object("still", "a"), object("gone", "a")
	mustApply(t, taken, still)
	refs := []ObjectRef{RefOf(taken), RefOf(still), RefOf(gone)}
	live, err := manager.Live(t.Context(), Objects(refs))
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, object("taken", "b")) // another application's apply, after the read

	cs, err := manager.DeleteAll(t.Context(), refs, metav1.DeletePropagationBackground, IfUnchanged(live))

	want := []Change{{Ref: refs[0], Action: Failed}, {Ref: refs[1], Action: Pruned}, {Ref: refs[2], Action: Pruned}}
	if diff := cmp.Diff(want, changes(cs)); diff != "" {
		t.Errorf("change set (-want +got):\n%s", diff)
	}
	if !errors.Is(err, ErrChanged) {
		t.Errorf("error = %v, want one wrapping ErrChanged", err)
	}
	if diff := cmp.Diff([]ObjectRef{refs[0]}, objectErrorRefs(err)); diff != "" {
		t.Errorf("objects named by the error (-want +got):\n%s", diff)
	}
	if obj := getLive(t, refs[0]); fieldOf(obj, "metadata", "labels", "flotilla.dev/app") != "b" {
		t.Errorf("the object changed after the read was deleted: %v", obj)
	}
	if obj := getLive(t, refs[1]); obj != nil {
		t.Errorf("the object unchanged since the read is still there")
	}
}

func TestWaitDeletedWaitsForTheFinalizer(t *testing.T) {
	ns := newNamespace(t)
	obj := decodeOne(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata:
  name: held
  namespace: $NS
  finalizers: [apply.flotilla.test/hold]
`)
	mustApply(t, obj)
	ref := RefOf(obj)
	if _, err := manager.DeleteAll(t.Context(), []ObjectRef{ref}, metav1.DeletePropagationBackground); err != nil {
		t.Fatal(err)
	}
	if live := getLive(t, ref); live == nil || live.GetDeletionTimestamp() == nil {
		t.Fatalf("%s is not being deleted: %v", ref, live)
	}
	m, requests := recordingManager(t)
	path := "/api/v1/namespaces/" + ns + "/configmaps/" + ref.Name
	reads := func(r request) bool { return r.Method == "GET" && r.Path == path }

	// Once WaitDeleted has found the object still there twice, the
	// finalizer is removed.
	var removing atomic.Bool
	removed := make(chan error, 1)
	go func() {
		removed <- func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for len(requests.matching(reads)) < 2 {
				select {
				case <-ctx.Done():
					return fmt.Errorf("WaitDeleted did not read %s twice: %w", ref, ctx.Err())
				case <-tick.C:
				}
			}
			removing.Store(true)
			return removeFinalizers(ctx, ref)
		}()
	}()

	err := m.WaitDeleted(t.Context(), []ObjectRef{ref}, 30*time.Second)

	if err != nil {
		t.Fatal(err)
	}
	if !removing.Load() {
		t.Error("WaitDeleted returned before the finalizer was removed")
	}
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if live := getLive(t, ref); live != nil {
		t.Errorf("%s still exists after WaitDeleted: %v", ref, live)
	}
}

func TestWaitDeletedTimesOutNamingWhatIsLeft(t *testing.T) {
	ns := newNamespace(t)
	objs := decode(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: held-1, namespace: $NS, finalizers: [apply.flotilla.test/hold]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: free, namespace: $NS}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: held-2, namespace: $NS, finalizers: [apply.flotilla.test/hold]}
`)
	mustApply(t, objs...)
	refs := Refs(objs)
	held := []ObjectRef{refs[0], refs[2]}
	t.Cleanup(func() {
		for _, ref := range held {
			if err := removeFinalizers(context.Background(), ref); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	if _, err := manager.DeleteAll(t.Context(), refs, metav1.DeletePropagationBackground); err != nil {
		t.Fatal(err)
	}

	err := manager.WaitDeleted(t.Context(), refs, time.Second)

	if err == nil {
		t.Fatal("WaitDeleted succeeded while two objects have a finalizer")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error is not a timeout: %v", err)
	}
	byString := cmpopts.SortSlices(func(a, b ObjectRef) bool { return a.String() < b.String() })
	if diff := cmp.Diff(held, objectErrorRefs(err), byString); diff != "" {
		t.Errorf("objects named by the error (-want +got):\n%s", diff)
	}
	for _, ref := range held {
		if !strings.Contains(err.Error(), ref.String()) {
			t.Errorf("error does not name %s: %v", ref, err)
		}
	}
}

// removeFinalizers clears the finalizers of ref, a ConfigMap.
func removeFinalizers(ctx context.Context, ref ObjectRef) error {
	_, err := cluster.Dynamic.Resource(configMaps).Namespace(ref.Namespace).
		Patch(ctx, ref.Name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("remove the finalizers of %s: %w", ref, err)
	}
	return nil
}
