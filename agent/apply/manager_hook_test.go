package apply

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestStartHook(t *testing.T) {
	ns := newNamespace(t)
	const job = `
apiVersion: batch/v1
kind: Job
metadata:
  $IDENTITY
  namespace: $NS
  labels: {run: "$RUN"}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: migrate:1}]
`
	cases := []struct {
		name     string
		identity string
		recreate bool
		// wantSameName and wantSameUID compare the second run with the
		// first.
		wantSameName, wantSameUID bool
	}{
		{name: "generateName creates a new object each run", identity: "generateName: migrate-",
			wantSameName: false, wantSameUID: false},
		{name: "a named hook with recreate replaces the previous run", identity: "name: migrate-recreated", recreate: true,
			wantSameName: true, wantSameUID: false},
		{name: "a named hook without recreate is applied in place", identity: "name: migrate-in-place",
			wantSameName: true, wantSameUID: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hook := func(run string) string {
				return strings.NewReplacer("$IDENTITY", tc.identity, "$RUN", run).Replace(job)
			}
			first := startHook(t, decodeOne(t, ns, hook("1")), tc.recreate)
			second := startHook(t, decodeOne(t, ns, hook("2")), tc.recreate)

			if same := first.GetName() == second.GetName(); same != tc.wantSameName {
				t.Errorf("runs named %s and %s, want the same name: %v", first.GetName(), second.GetName(), tc.wantSameName)
			}
			if same := first.GetUID() == second.GetUID(); same != tc.wantSameUID {
				t.Errorf("runs have uid %s and %s, want the same object: %v", first.GetUID(), second.GetUID(), tc.wantSameUID)
			}
			live := getLive(t, RefOf(second))
			if live == nil || live.GetUID() != second.GetUID() {
				t.Fatalf("the second run %s is not live: %v", RefOf(second), live)
			}
			if got := live.GetLabels()["run"]; got != "2" {
				t.Errorf("live run label %q, want the second run's", got)
			}
			switch old := getLive(t, RefOf(first)); {
			case !tc.wantSameName && old == nil:
				t.Errorf("the first run %s was deleted; a generated name keeps every run", RefOf(first))
			case tc.wantSameName && (old == nil || old.GetUID() != second.GetUID()):
				t.Errorf("the first run's name holds uid %q, want the second run's %s", fieldOf(old, "metadata", "uid"), second.GetUID())
			}
		})
	}
}

// startHook is StartHook that checks the hook given is not changed.
func startHook(t *testing.T, hook *unstructured.Unstructured, recreate bool) *unstructured.Unstructured {
	t.Helper()
	given := hook.DeepCopy()
	started, err := manager.StartHook(t.Context(), hook, recreate, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(given, hook); diff != "" {
		t.Errorf("StartHook changed the hook (-before +after):\n%s", diff)
	}
	if started.GetName() == "" || started.GetUID() == "" {
		t.Fatalf("StartHook returned %v, want the object as stored", started)
	}
	return started
}
