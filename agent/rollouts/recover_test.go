package rollouts

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/tools/cache"
)

// recoverFixture is a controller over one Rollout, prod/api, part way
// through a canary, with what it logs and reports kept for the test.
type recoverFixture struct {
	c       *Controller
	client  *fake.FakeDynamicClient
	logs    *bytes.Buffer
	changed []*unstructured.Unstructured
	key     cache.ObjectName
}

func newRecoverFixture(t *testing.T) *recoverFixture {
	t.Helper()
	ro := rolloutYAML(t, base+"  strategy: {canary: {steps: [{setWeight: 10}, {pause: {}}]}}")
	ro.Object["status"] = map[string]any{"phase": PhaseProgressing, "stableRS": "5d4f8b", "currentPodHash": "7c9a2e"}
	f := &recoverFixture{client: fake.NewSimpleDynamicClient(runtime.NewScheme(), ro), logs: &bytes.Buffer{},
		key: cache.ObjectName{Namespace: "prod", Name: "api"}}
	opts := DefaultOptions()
	opts.OnChange = func(ro *unstructured.Unstructured) { f.changed = append(f.changed, ro) }
	f.c = NewController(f.client, opts, slog.New(slog.NewJSONHandler(f.logs, nil)))
	t.Cleanup(f.c.queue.ShutDown)
	return f
}

// process is one turn of the worker (processNext) with reconcile in place
// of Controller.Reconcile.
func (f *recoverFixture) process(t *testing.T, reconcile reconcileFunc) error {
	t.Helper()
	f.c.queue.Add(f.key)
	key, _ := f.c.queue.Get()
	defer f.c.queue.Done(key)
	after, err := f.c.recoverReconcile(t.Context(), key, reconcile)
	f.c.requeue(key, after, err)
	return err
}

func (f *recoverFixture) status(t *testing.T) map[string]any {
	t.Helper()
	live, err := f.client.Resource(GVR).Namespace(f.key.Namespace).Get(t.Context(), f.key.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status, _, _ := unstructured.NestedMap(live.Object, "status")
	return status
}

func TestAPanickingReconcileDegradesItsRolloutAndIsRetried(t *testing.T) {
	f := newRecoverFixture(t)
	// The agent's crash of issue 13, in a reconcile.
	panics := func(context.Context, string, string) (time.Duration, error) { panic("cannot deep copy int") }

	err := f.process(t, panics)

	if !errors.Is(err, errReconcilePanicked) {
		t.Fatalf("recoverReconcile returned %v, want errReconcilePanicked", err)
	}
	// The status says Degraded with the fixed message (nothing of the
	// panic's value) and keeps the rest of the rollout's progress.
	want := map[string]any{"phase": PhaseDegraded, "message": internalErrorMessage, "stableRS": "5d4f8b", "currentPodHash": "7c9a2e"}
	if diff := cmp.Diff(want, f.status(t)); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if len(f.changed) != 1 {
		t.Errorf("OnChange was called %d times, want once", len(f.changed))
	}
	// The log has the panic and the stack that led to it.
	logs := f.logs.String()
	for _, want := range []string{"rollout reconcile panicked", "cannot deep copy int", "runtime/debug.Stack", "TestAPanickingReconcileDegradesItsRolloutAndIsRetried"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	// It is retried with rate limit, as any failed reconcile.
	if n := f.c.queue.NumRequeues(f.key); n != 1 {
		t.Errorf("requeued with rate limit %d times, want 1", n)
	}

	// The same panic again: retried again, the status (already saying so)
	// not written, nothing reported.
	if err := f.process(t, panics); !errors.Is(err, errReconcilePanicked) {
		t.Fatalf("second reconcile returned %v, want errReconcilePanicked", err)
	}
	if n := f.c.queue.NumRequeues(f.key); n != 2 {
		t.Errorf("requeued with rate limit %d times, want 2", n)
	}
	if len(f.changed) != 1 {
		t.Errorf("OnChange was called %d times, want still once", len(f.changed))
	}
}

func TestAReconcileThatDoesNotPanicPassesThrough(t *testing.T) {
	failure := errors.New("the Service \"api-canary\" does not exist")
	for _, tc := range []struct {
		name      string
		after     time.Duration
		err       error
		wantQueue int // requeues with rate limit
	}{
		{name: "a reconcile that wants another look in a minute", after: time.Minute},
		{name: "a reconcile that fails", err: failure, wantQueue: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRecoverFixture(t)
			after, err := f.c.recoverReconcile(t.Context(), f.key, func(_ context.Context, namespace, name string) (time.Duration, error) {
				if namespace != f.key.Namespace || name != f.key.Name {
					t.Errorf("reconcile called for %s/%s, want %s", namespace, name, f.key)
				}
				return tc.after, tc.err
			})
			if after != tc.after || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("recoverReconcile = %v, %v; want %v, %v", after, err, tc.after, tc.err)
			}
			f.c.requeue(f.key, after, err)
			if n := f.c.queue.NumRequeues(f.key); n != tc.wantQueue {
				t.Errorf("requeued with rate limit %d times, want %d", n, tc.wantQueue)
			}
			if got := f.status(t)["phase"]; got != PhaseProgressing {
				t.Errorf("status.phase = %v, want it untouched (%s)", got, PhaseProgressing)
			}
			if len(f.changed) != 0 {
				t.Errorf("OnChange was called %d times, want never", len(f.changed))
			}
		})
	}
}

func TestAPanicWhileReportingThePanicDoesNotEscape(t *testing.T) {
	f := newRecoverFixture(t)
	f.c.opts.OnChange = func(*unstructured.Unstructured) { panic("report failed") }

	err := f.process(t, func(context.Context, string, string) (time.Duration, error) { panic("cannot deep copy int") })

	if !errors.Is(err, errReconcilePanicked) {
		t.Fatalf("recoverReconcile returned %v, want errReconcilePanicked", err)
	}
	if got := f.status(t)["phase"]; got != PhaseDegraded {
		t.Errorf("status.phase = %v, want %s", got, PhaseDegraded)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "report failed") {
		t.Errorf("the log lacks OnChange's panic:\n%s", logs)
	}
}
