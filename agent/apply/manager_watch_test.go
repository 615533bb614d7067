package apply

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

var configMapKind = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}

// event is one call of a Watch's changed.
type event struct {
	Type watch.EventType
	Name string // namespace/name
}

// watchEvents starts a Watch of ConfigMaps matching selector and returns
// its events. The Watch ends with the test.
func watchEvents(t *testing.T, selector string) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	events := make(chan event, 100)
	gvr, err := manager.Watch(ctx, configMapKind, selector, testLogger(t), func(typ watch.EventType, obj *unstructured.Unstructured) {
		select {
		case events <- event{typ, obj.GetNamespace() + "/" + obj.GetName()}:
		case <-ctx.Done():
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if gvr != configMaps {
		t.Errorf("Watch watches %s, want %s", gvr, configMaps)
	}
	return events
}

// nextEvent is the next event, failing the test after timeout.
func nextEvent(t *testing.T, events <-chan event, timeout time.Duration) event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %s", timeout)
		return event{}
	}
}

func TestWatchFollowsLabelledObjectsOnly(t *testing.T) {
	ns := newNamespace(t)
	label := "apply.flotilla.test/watch"
	events := watchEvents(t, label+"="+ns)
	ri := cluster.Dynamic.Resource(configMaps).Namespace(ns)
	configMap := func(name string, labelled bool) *unstructured.Unstructured {
		obj := decodeOne(t, ns, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: $NS}\n", name))
		if labelled {
			obj.SetLabels(map[string]string{label: ns})
		}
		return obj
	}
	patch := []byte(`{"data":{"changed":"yes"}}`)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every change to the unlabelled object comes before the matching one
	// to the labelled object: one watch delivers in order, so once the
	// labelled object's deletion arrives, any event of the unlabelled one
	// would have arrived before it.
	must(ri.Create(t.Context(), configMap("plain", false), metav1.CreateOptions{}))
	must(ri.Create(t.Context(), configMap("marked", true), metav1.CreateOptions{}))
	must(ri.Patch(t.Context(), "plain", types.MergePatchType, patch, metav1.PatchOptions{}))
	must(ri.Patch(t.Context(), "marked", types.MergePatchType, patch, metav1.PatchOptions{}))
	must(nil, ri.Delete(t.Context(), "plain", metav1.DeleteOptions{}))
	must(nil, ri.Delete(t.Context(), "marked", metav1.DeleteOptions{}))

	var got []event
	for len(got) == 0 || got[len(got)-1].Type != watch.Deleted {
		got = append(got, nextEvent(t, events, 30*time.Second))
	}

	marked := ns + "/marked"
	wantEvents := []event{{watch.Added, marked}, {watch.Modified, marked}, {watch.Deleted, marked}}
	if diff := cmp.Diff(wantEvents, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestWatchSeesEveryChangeAfterItReturned: the point a Watch follows from
// is read before it returns, so a change made right after is delivered.
// Repeated, since a start-up race would lose it only sometimes.
func TestWatchSeesEveryChangeAfterItReturned(t *testing.T) {
	ns := newNamespace(t)
	label := "apply.flotilla.test/watch"
	for i := range 10 {
		selector := fmt.Sprintf("%s=%s-%d", label, ns, i)
		events := watchEvents(t, selector)
		obj := decodeOne(t, ns, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d, namespace: $NS}\n", i))
		obj.SetLabels(map[string]string{label: fmt.Sprintf("%s-%d", ns, i)})
		if _, err := cluster.Dynamic.Resource(configMaps).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		if ev := nextEvent(t, events, 30*time.Second); ev != (event{watch.Added, ns + "/" + obj.GetName()}) {
			t.Errorf("run %d: first event %+v, want the creation of %s", i, ev, obj.GetName())
		}
	}
}

func TestWatchOfAnUnknownKindFails(t *testing.T) {
	gvk := schema.GroupVersionKind{Group: "watch.flotilla.test", Version: "v1", Kind: "Unknown"}

	gvr, err := manager.Watch(t.Context(), gvk, "", testLogger(t), func(watch.EventType, *unstructured.Unstructured) {
		t.Error("an event for a kind the server does not serve")
	})

	if !meta.IsNoMatchError(err) {
		t.Errorf("Watch of %s: error %v, want no match for the kind", gvk, err)
	}
	if !gvr.Empty() {
		t.Errorf("Watch of an unknown kind returned resource %s", gvr)
	}
}
