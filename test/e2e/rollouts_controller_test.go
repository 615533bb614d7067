package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/testing/protocmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-dev/flotilla/agent/rollouts"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

var (
	replicaSets  = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	services     = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	analysisRuns = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysisruns"}
)

// startRolloutsController runs the agent's rollouts controller on c; the
// returned function stops it (as an agent dying would). With tracing, the
// steps are traced under syncSpan.
func startRolloutsController(t *testing.T, c *testenv.Cluster, tracing ...trace.TracerProvider) (stop func()) {
	t.Helper()
	opts := rollouts.DefaultOptions()
	if len(tracing) > 0 {
		opts.Tracing = tracing[0]
		opts.TraceParent = func(*unstructured.Unstructured) trace.SpanContext { return syncSpan }
	}
	return flotillatest.StartRolloutsController(t, c, opts, slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("controller", c.Name))
}

// syncSpan stands for the agent's sync span the steps are traced under.
var syncSpan = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
	SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, TraceFlags: trace.FlagsSampled, Remote: true,
})

// webCheck is the endpoint a web metric reads: {"ok": <healthy>}.
type webCheck struct {
	healthy atomic.Bool
	calls   atomic.Int64
	srv     *httptest.Server
}

func startWebCheck(t *testing.T) *webCheck {
	w := &webCheck{}
	w.healthy.Store(true)
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		w.calls.Add(1)
		_ = json.NewEncoder(rw).Encode(map[string]any{"ok": w.healthy.Load()})
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func rollout(t *testing.T, c *testenv.Cluster, ns, name string) *unstructured.Unstructured {
	t.Helper()
	ro, err := c.Dynamic.Resource(rollouts.GVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	must(t, err)
	return ro
}

// replicaSetSizes maps each of the rollout's ReplicaSets' hashes to its
// spec and available replicas: "3/3".
func replicaSetSizes(t *testing.T, c *testenv.Cluster, ns string) map[string]string {
	t.Helper()
	list, err := c.Dynamic.Resource(replicaSets).Namespace(ns).List(context.Background(), metav1.ListOptions{LabelSelector: rollouts.HashLabel})
	must(t, err)
	out := map[string]string{}
	for _, rs := range list.Items {
		out[rs.GetLabels()[rollouts.HashLabel]] = testenv.Field(&rs, "spec", "replicas") + "/" + orZero(testenv.Field(&rs, "status", "availableReplicas"))
	}
	return out
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

func selectorHash(t *testing.T, c *testenv.Cluster, ns, svc string) string {
	t.Helper()
	obj, err := c.Dynamic.Resource(services).Namespace(ns).Get(context.Background(), svc, metav1.GetOptions{})
	must(t, err)
	return testenv.Field(obj, "spec", "selector", rollouts.HashLabel)
}

// waitRollout waits until the Rollout's status satisfies ok.
func waitRollout(t *testing.T, c *testenv.Cluster, ns, name string, timeout time.Duration, ok func(ro *unstructured.Unstructured) error) *unstructured.Unstructured {
	t.Helper()
	var last *unstructured.Unstructured
	testenv.Eventually(t, timeout, func() error {
		var err error
		if last, err = c.Dynamic.Resource(rollouts.GVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return err
		}
		if err := ok(last); err != nil {
			return fmt.Errorf("%w (status: phase %s step %s message %q, replica sets %v)", err, testenv.Field(last, "status", "phase"),
				testenv.Field(last, "status", "currentStepIndex"), testenv.Field(last, "status", "message"), replicaSetSizes(t, c, ns))
		}
		return nil
	})
	return last
}

// waitReconciled proves that the rollouts controller running now (the
// agent's, or one alone) has reconciled the Rollout since this call, so a
// check that nothing changed checks something. It sets
// spec.revisionHistoryLimit, which bumps the generation and changes nothing
// else (no Rollout here has ten old ReplicaSets, and Git sets no limit, so
// an agent sees no drift), and waits until status.observedGeneration is the
// new generation: only a reconcile that ran to its end after the change
// writes that. It returns the Rollout as that reconcile left it.
func waitReconciled(t *testing.T, c *testenv.Cluster, ns, name string) *unstructured.Unstructured {
	t.Helper()
	limit := int64(10)
	if l, found, _ := unstructured.NestedInt64(rollout(t, c, ns, name).Object, "spec", "revisionHistoryLimit"); found && l == limit {
		limit++
	}
	patch := fmt.Sprintf(`{"spec":{"revisionHistoryLimit":%d}}`, limit)
	probed, err := c.Dynamic.Resource(rollouts.GVR).Namespace(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: "e2e-reconcile-probe"})
	must(t, err)
	generation := fmt.Sprint(probed.GetGeneration())
	return waitRollout(t, c, ns, name, time.Minute, func(ro *unstructured.Unstructured) error {
		if got := testenv.Field(ro, "status", "observedGeneration"); got != generation {
			return fmt.Errorf("observed generation %s, want %s: not reconciled since the probe", got, generation)
		}
		return nil
	})
}

func phaseIs(phase string) func(*unstructured.Unstructured) error {
	return func(ro *unstructured.Unstructured) error {
		if got := testenv.Field(ro, "status", "phase"); got != phase {
			return fmt.Errorf("phase %q, want %q", got, phase)
		}
		return nil
	}
}

// setImage gives the Rollout's container "api" a new image: a new revision.
func setImage(t *testing.T, c *testenv.Cluster, ns, name, image string) {
	t.Helper()
	c.SetImage(t, rollouts.GVR, ns, name, "api", image)
}

func act(t *testing.T, c *testenv.Cluster, ns, name string, action flotillav1.RolloutAction) {
	t.Helper()
	must(t, rollouts.Act(context.Background(), c.Dynamic, rollout(t, c, ns, name), action, false))
}

// rolloutsCluster is a workloads cluster (ReplicaSets really scale) with
// the agent's argoproj.io CRDs served and the namespace ns.
func rolloutsCluster(t *testing.T, name, ns string) *testenv.Cluster {
	t.Helper()
	c := testenv.StartCluster(t, testenv.ClusterOptions{Name: name, Workloads: true})
	flotillatest.InstallRolloutsCRDs(t, c)
	c.CreateNamespace(t, ns)
	return c
}

const canaryManifests = `apiVersion: v1
kind: Service
metadata: {name: api-stable}
spec: {selector: {app: api}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api-canary}
spec: {selector: {app: api}, ports: [{port: 80}]}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: smoke}
spec:
  args: [{name: url}]
  metrics:
    - name: ok
      interval: 200ms
      count: 3
      failureLimit: 1
      successCondition: result == true
      provider:
        web: {url: "{{args.url}}", jsonPath: "{$.ok}"}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api}
spec:
  replicas: 4
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: "registry.example.com/api:1"}]}
  strategy:
    canary:
      canaryService: api-canary
      stableService: api-stable
      analysis:
        templates: [{templateName: smoke}]
        args: [{name: url, value: "%[1]s"}]
        startingStep: 2
      steps:
        - setWeight: 25
        - pause: {}
        - analysis:
            templates: [{templateName: smoke}]
            args: [{name: url, value: "%[1]s"}]
        - setWeight: 50
        - pause: {duration: 1}
`

// TestRolloutsControllerRunsACanary drives the agent's rollouts controller
// on a cluster whose ReplicaSets really scale: first revision straight to
// stable, a canary through its steps (25 % as replicas, an indefinite pause
// that survives a controller restart, web analysis, promotion), an
// analysis failure that aborts back to stable and stays so, and a retry.
func TestRolloutsControllerRunsACanary(t *testing.T) {
	ns := "canary"
	c := rolloutsCluster(t, "rollouts", ns)
	check := startWebCheck(t)
	parent := t // a controller started in a subtest must outlive it
	spans := tracetest.NewSpanRecorder()
	tracing := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	stop := startRolloutsController(parent, c, tracing)
	c.CreateAll(t, ns, fmt.Sprintf(canaryManifests, check.srv.URL))

	ro := waitRollout(t, c, ns, "api", time.Minute, phaseIs("Healthy"))
	v1 := testenv.Field(ro, "status", "stableRS")
	if got := replicaSetSizes(t, c, ns); got[v1] != "4/4" || len(got) != 1 {
		t.Fatalf("first revision: replica sets %v, want only %s at 4/4", got, v1)
	}
	if s, cn := selectorHash(t, c, ns, "api-stable"), selectorHash(t, c, ns, "api-canary"); s != v1 || cn != v1 {
		t.Fatalf("services on %s and %s, want both on %s", s, cn, v1)
	}

	// Each step starts from the state the steps before it left.
	step := newSteps(t)
	step.run("steps, a restart mid-pause and promotion", func(t *testing.T) {
		setImage(t, c, ns, "api", "registry.example.com/api:2")
		ro := waitRollout(t, c, ns, "api", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "phase") != "Paused" || testenv.Field(ro, "status", "currentStepIndex") != "1" {
				return fmt.Errorf("not paused at step 1")
			}
			return nil
		})
		v2 := testenv.Field(ro, "status", "currentPodHash")
		if got := replicaSetSizes(t, c, ns); got[v2] != "1/1" || got[v1] != "3/3" {
			t.Fatalf("at 25 %%: replica sets %v, want %s 1/1 and %s 3/3", got, v2, v1)
		}
		if s, cn := selectorHash(t, c, ns, "api-stable"), selectorHash(t, c, ns, "api-canary"); s != v1 || cn != v2 {
			t.Fatalf("stable service on %s, canary on %s; want %s and %s", s, cn, v1, v2)
		}
		pausedAt := testenv.Field(ro, "status", "pauseConditions")
		// The app status shows the steps and both ReplicaSets with their pods.
		summary := rollouts.Summarizer{Client: c.Dynamic}.Summarize(context.Background(), ro)
		if diff := cmp.Diff([]string{"setWeight 25", "pause", "analysis smoke", "setWeight 50", "pause 1s"}, summary.GetStepNames()); diff != "" {
			t.Errorf("step names (-want +got):\n%s", diff)
		}
		wantSets := []*flotillav1.RolloutReplicaSet{
			{Name: "api-" + v1, Hash: v1, Role: "stable", Replicas: 3, ReadyReplicas: 3, AvailableReplicas: 3, Images: []string{"registry.example.com/api:1"}},
			{Name: "api-" + v2, Hash: v2, Role: "canary", Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, Images: []string{"registry.example.com/api:2"}},
		}
		if diff := cmp.Diff(wantSets, summary.GetReplicaSets(), protocmp.Transform()); diff != "" {
			t.Errorf("replica sets at 25 %% (-want +got):\n%s", diff)
		}

		// The agent dies and comes back: the rollout is where it was.
		stop()
		stop = startRolloutsController(parent, c, tracing)
		ro = waitReconciled(t, c, ns, "api") // the new controller has looked at it; it must change nothing
		if testenv.Field(ro, "status", "currentStepIndex") != "1" || testenv.Field(ro, "status", "pauseConditions") != pausedAt {
			t.Fatalf("after a restart: step %s pause %s, want step 1 pause %s", testenv.Field(ro, "status", "currentStepIndex"), testenv.Field(ro, "status", "pauseConditions"), pausedAt)
		}

		act(t, c, ns, "api", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE)
		waitRollout(t, c, ns, "api", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "stableRS") != v2 || testenv.Field(ro, "status", "phase") != "Healthy" {
				return fmt.Errorf("not promoted")
			}
			return nil
		})
		if got := replicaSetSizes(t, c, ns); got[v2] != "4/4" || !strings.HasPrefix(got[v1], "0/") {
			t.Fatalf("promoted: replica sets %v", got)
		}
		run, err := c.Dynamic.Resource(analysisRuns).Namespace(ns).Get(context.Background(), "api-"+v2+"-2", metav1.GetOptions{})
		must(t, err)
		results, _, _ := unstructured.NestedSlice(run.Object, "status", "metricResults")
		if testenv.Field(run, "status", "phase") != "Successful" || len(results) != 1 || fmt.Sprint(results[0].(map[string]any)["count"]) != "3" {
			t.Fatalf("analysis run: phase %s results %v", testenv.Field(run, "status", "phase"), results)
		}
		if s := selectorHash(t, c, ns, "api-stable"); s != v2 {
			t.Fatalf("stable service on %s after promotion, want %s", s, v2)
		}
		checkMeasurementHistory(t, rollouts.Summarizer{Client: c.Dynamic}.Summarize(context.Background(), rollout(t, c, ns, "api")))
		// A span per step and per measurement, in the sync's trace.
		var names []string
		for _, s := range spans.Ended() {
			if s.SpanContext().TraceID() != syncSpan.TraceID() || s.Parent().SpanID() != syncSpan.SpanID() {
				t.Errorf("span %s is in trace %s, want the sync's %s", s.Name(), s.SpanContext().TraceID(), syncSpan.TraceID())
			}
			names = append(names, s.Name())
		}
		got := strings.Join(names, ", ")
		for _, want := range []string{"rollout.step 0 setWeight 25", "rollout.step 1 pause", "rollout.step 2 analysis", "rollout.measurement ok", "rollout.step 4 pause"} {
			if !strings.Contains(got, want) {
				t.Errorf("no span %q among %s", want, got)
			}
		}
		v1 = v2
	})

	step.run("a failed analysis aborts to stable until a retry", func(t *testing.T) {
		check.healthy.Store(false)
		setImage(t, c, ns, "api", "registry.example.com/api:3")
		waitRollout(t, c, ns, "api", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "currentStepIndex") != "1" {
				return fmt.Errorf("not at the pause")
			}
			return nil
		})
		act(t, c, ns, "api", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE)
		ro := waitRollout(t, c, ns, "api", time.Minute, phaseIs("Degraded"))
		v3 := testenv.Field(ro, "status", "currentPodHash")
		if msg := testenv.Field(ro, "status", "message"); !strings.Contains(msg, "RolloutAborted") || !strings.Contains(msg, "failed (2) > failureLimit (1)") {
			t.Fatalf("abort message %q", msg)
		}
		waitRollout(t, c, ns, "api", 30*time.Second, func(*unstructured.Unstructured) error {
			if got := replicaSetSizes(t, c, ns); !strings.HasPrefix(got[v3], "0/") || got[v1] != "4/4" {
				return fmt.Errorf("replica sets %v", got)
			}
			if cn := selectorHash(t, c, ns, "api-canary"); cn != v1 {
				return fmt.Errorf("canary service on %s, want stable %s", cn, v1)
			}
			return nil
		})
		// Not retried by itself: a reconcile after the abort leaves it.
		calls := check.calls.Load()
		if ro := waitReconciled(t, c, ns, "api"); testenv.Field(ro, "status", "phase") != "Degraded" || check.calls.Load() != calls {
			t.Fatalf("an aborted revision went on by itself: phase %s, %d more measurements", testenv.Field(ro, "status", "phase"), check.calls.Load()-calls)
		}

		act(t, c, ns, "api", flotillav1.RolloutAction_ROLLOUT_ACTION_RETRY)
		waitRollout(t, c, ns, "api", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "currentStepIndex") != "1" || testenv.Field(ro, "status", "phase") != "Paused" {
				return fmt.Errorf("retry did not start again")
			}
			return nil
		})
		// A full promote skips the remaining steps, analysis included
		// (the step's and the background one; both would fail now).
		check.healthy.Store(false)
		calls = check.calls.Load()
		must(t, rollouts.Act(context.Background(), c.Dynamic, rollout(t, c, ns, "api"), flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE, true))
		waitRollout(t, c, ns, "api", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "stableRS") != v3 || testenv.Field(ro, "status", "phase") != "Healthy" {
				return fmt.Errorf("retried revision not fully promoted")
			}
			return nil
		})
		if n := check.calls.Load() - calls; n != 0 {
			t.Errorf("a full promote still measured %d times", n)
		}
	})
}

// checkMeasurementHistory checks the analysis a promoted canary of
// canaryManifests reports: the smoke metric's success condition and every
// measurement it took, oldest first, each true.
func checkMeasurementHistory(t *testing.T, ro *flotillav1.RolloutStatus) {
	t.Helper()
	measurements := ro.GetAnalysis().GetMeasurements()
	if len(measurements) != 1 {
		t.Fatalf("analysis %v, want the smoke metric's measurements", ro.GetAnalysis())
	}
	m := measurements[0]
	if m.GetMetric() != "ok" || m.GetSuccessCondition() != "result == true" || m.GetFailureCondition() != "" {
		t.Errorf("metric %q with conditions %q and %q, want ok with result == true", m.GetMetric(), m.GetSuccessCondition(), m.GetFailureCondition())
	}
	history := m.GetHistory()
	if len(history) == 0 || len(history) != int(m.GetCount()) {
		t.Fatalf("history of %d measurements, count %d", len(history), m.GetCount())
	}
	for i, p := range history {
		if p.GetPhase() != "Successful" || p.GetValue() != "true" || i > 0 && p.GetFinishedAt().AsTime().Before(history[i-1].GetFinishedAt().AsTime()) {
			t.Errorf("measurement %d of %d: %v", i+1, len(history), p)
		}
	}
}

const blueGreenManifests = `apiVersion: v1
kind: Service
metadata: {name: web-active}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-preview}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: bg-smoke}
spec:
  args: [{name: url}]
  metrics:
    - name: ok
      interval: 300ms
      count: 3
      successCondition: result == true
      provider:
        web: {url: "{{args.url}}", jsonPath: "{$.ok}"}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: api, image: "registry.example.com/web:1"}]}
  strategy:
    blueGreen:
      activeService: web-active
      previewService: web-preview
      scaleDownDelaySeconds: 1
      abortScaleDownDelaySeconds: 0
      prePromotionAnalysis:
        templates: [{templateName: bg-smoke, clusterScope: true}]
        args: [{name: url, value: "%s"}]
`

// TestRolloutsControllerRunsBlueGreen: the active Service switches only
// after pre-promotion analysis passed; the old version goes after
// scaleDownDelaySeconds; a failing analysis leaves the active Service where
// it was and the rollout Degraded.
func TestRolloutsControllerRunsBlueGreen(t *testing.T) {
	ns := "bluegreen"
	c := rolloutsCluster(t, "bluegreen", ns)
	check := startWebCheck(t)
	startRolloutsController(t, c)
	c.CreateAll(t, ns, fmt.Sprintf(blueGreenManifests, check.srv.URL))

	ro := waitRollout(t, c, ns, "web", time.Minute, phaseIs("Healthy"))
	v1 := testenv.Field(ro, "status", "stableRS")
	if a := selectorHash(t, c, ns, "web-active"); a != v1 {
		t.Fatalf("active service on %q, want %s", a, v1)
	}

	setImage(t, c, ns, "web", "registry.example.com/web:2")
	// While the analysis runs the preview gets the new version and the
	// active Service stays.
	ro = waitRollout(t, c, ns, "web", time.Minute, func(ro *unstructured.Unstructured) error {
		if testenv.Field(ro, "status", "blueGreen", "prePromotionAnalysisRunStatus", "status") != "Running" {
			return fmt.Errorf("pre-promotion analysis not running")
		}
		return nil
	})
	v2 := testenv.Field(ro, "status", "currentPodHash")
	if a, p := selectorHash(t, c, ns, "web-active"), selectorHash(t, c, ns, "web-preview"); a != v1 || p != v2 {
		t.Fatalf("during analysis: active on %s, preview on %s; want %s and %s", a, p, v1, v2)
	}
	ro = waitRollout(t, c, ns, "web", time.Minute, func(ro *unstructured.Unstructured) error {
		if testenv.Field(ro, "status", "stableRS") != v2 || testenv.Field(ro, "status", "phase") != "Healthy" {
			return fmt.Errorf("not promoted")
		}
		return nil
	})
	if testenv.Field(ro, "status", "blueGreen", "prePromotionAnalysisRunStatus", "status") != "Successful" || selectorHash(t, c, ns, "web-active") != v2 {
		t.Fatalf("promoted without a successful analysis or active service on %s", selectorHash(t, c, ns, "web-active"))
	}
	waitRollout(t, c, ns, "web", 30*time.Second, func(*unstructured.Unstructured) error {
		if got := replicaSetSizes(t, c, ns); !strings.HasPrefix(got[v1], "0/") || got[v2] != "3/3" {
			return fmt.Errorf("old version not scaled down after scaleDownDelaySeconds: %v", got)
		}
		return nil
	})

	check.healthy.Store(false)
	setImage(t, c, ns, "web", "registry.example.com/web:3")
	ro = waitRollout(t, c, ns, "web", time.Minute, phaseIs("Degraded"))
	v3 := testenv.Field(ro, "status", "currentPodHash")
	if a := selectorHash(t, c, ns, "web-active"); a != v2 {
		t.Fatalf("after a failed pre-promotion analysis the active service is on %s, want %s", a, v2)
	}
	waitRollout(t, c, ns, "web", 30*time.Second, func(*unstructured.Unstructured) error {
		if got := replicaSetSizes(t, c, ns); !strings.HasPrefix(got[v3], "0/") || got[v2] != "3/3" {
			return fmt.Errorf("aborted preview not scaled down: %v", got)
		}
		return nil
	})

	t.Run("manual promotion, then post-promotion analysis that fails puts the old version back", func(t *testing.T) {
		post := startWebCheck(t)
		post.healthy.Store(false)
		c.CreateAll(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: app-active}
spec: {selector: {app: app}, ports: [{port: 80}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: app}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: api, image: "registry.example.com/app:1"}]}
  strategy:
    blueGreen:
      activeService: app-active
      autoPromotionEnabled: false
      abortScaleDownDelaySeconds: 0
      postPromotionAnalysis:
        templates: [{templateName: bg-smoke, clusterScope: true}]
        args: [{name: url, value: %q}]
`, post.srv.URL))
		ro := waitRollout(t, c, ns, "app", time.Minute, phaseIs("Healthy"))
		a1 := testenv.Field(ro, "status", "stableRS")

		setImage(t, c, ns, "app", "registry.example.com/app:2")
		ro = waitRollout(t, c, ns, "app", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "phase") != "Paused" || !strings.Contains(testenv.Field(ro, "status", "pauseConditions"), "BlueGreenPause") {
				return fmt.Errorf("not waiting for a promote")
			}
			return nil
		})
		a2 := testenv.Field(ro, "status", "currentPodHash")
		if a := selectorHash(t, c, ns, "app-active"); a != a1 {
			t.Fatalf("active switched before the promote: %s", a)
		}
		act(t, c, ns, "app", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE)
		// The active Service switches, post-promotion analysis fails, and
		// the active Service goes back.
		waitRollout(t, c, ns, "app", time.Minute, phaseIs("Degraded"))
		ro = rollout(t, c, ns, "app")
		if a := selectorHash(t, c, ns, "app-active"); a != a1 || testenv.Field(ro, "status", "stableRS") != a1 {
			t.Errorf("after a failed post-promotion analysis: active on %s, stable %s; want %s", a, testenv.Field(ro, "status", "stableRS"), a1)
		}
		if testenv.Field(ro, "status", "blueGreen", "postPromotionAnalysisRunStatus", "status") != "Failed" || post.calls.Load() == 0 {
			t.Errorf("post-promotion analysis: %s after %d calls", testenv.Field(ro, "status", "blueGreen", "postPromotionAnalysisRunStatus", "status"), post.calls.Load())
		}
		waitRollout(t, c, ns, "app", 30*time.Second, func(*unstructured.Unstructured) error {
			if got := replicaSetSizes(t, c, ns); !strings.HasPrefix(got[a2], "0/") || got[a1] != "2/2" {
				return fmt.Errorf("the failed version is not scaled down: %v", got)
			}
			return nil
		})
	})
}

// httpRouteCRD is Gateway API's own HTTPRoute definition, from the module
// the agent reads routes with.
func httpRouteCRD(t *testing.T) string {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	must(t, err)
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "config", "crd", "standard", "gateway.networking.k8s.io_httproutes.yaml"))
	must(t, err)
	return string(data)
}

// shopServices are the stable and canary Services of the routed tests'
// "shop" Rollout.
const shopServices = `apiVersion: v1
kind: Service
metadata: {name: shop-stable}
spec: {selector: {app: shop}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: shop-canary}
spec: {selector: {app: shop}, ports: [{port: 80}]}
---
`

const routedManifests = shopServices + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: gateway}]
  rules:
    - backendRefs:
        - {name: shop-stable, port: 80, weight: 100}
        - {name: shop-canary, port: 80, weight: 0}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec: {containers: [{name: api, image: "registry.example.com/shop:1"}]}
  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop-stable
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI: {httpRoute: shop}
      steps:
        - setWeight: 30
        - pause: {}
`

// TestRolloutsControllerRoutesThroughGatewayAPI: with the Gateway API
// plugin the weight is the HTTPRoute's backend weights, and the stable set
// keeps its size.
func TestRolloutsControllerRoutesThroughGatewayAPI(t *testing.T) {
	ns := "routed"
	c := rolloutsCluster(t, "routed", ns)
	c.CreateAll(t, "", httpRouteCRD(t))
	routes := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := c.Dynamic.Resource(routes).Namespace(ns).List(context.Background(), metav1.ListOptions{})
		return err
	})
	startRolloutsController(t, c)
	c.CreateAll(t, ns, routedManifests)
	ro := waitRollout(t, c, ns, "shop", time.Minute, phaseIs("Healthy"))
	v1 := testenv.Field(ro, "status", "stableRS")
	weights := func() string {
		route, err := c.Dynamic.Resource(routes).Namespace(ns).Get(context.Background(), "shop", metav1.GetOptions{})
		must(t, err)
		rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
		var out []string
		for _, ref := range rules[0].(map[string]any)["backendRefs"].([]any) {
			m := ref.(map[string]any)
			out = append(out, fmt.Sprintf("%s=%v", m["name"], m["weight"]))
		}
		return strings.Join(out, " ")
	}

	setImage(t, c, ns, "shop", "registry.example.com/shop:2")
	ro = waitRollout(t, c, ns, "shop", time.Minute, phaseIs("Paused"))
	v2 := testenv.Field(ro, "status", "currentPodHash")
	if w := weights(); w != "shop-stable=70 shop-canary=30" {
		t.Errorf("route weights at 30 %%: %s", w)
	}
	if got := replicaSetSizes(t, c, ns); got[v2] != "2/2" || got[v1] != "4/4" {
		t.Errorf("routed canary at 30 %%: replica sets %v, want %s 2/2 and stable %s 4/4", got, v2, v1)
	}
	act(t, c, ns, "shop", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE)
	waitRollout(t, c, ns, "shop", time.Minute, func(ro *unstructured.Unstructured) error {
		if testenv.Field(ro, "status", "stableRS") != v2 || testenv.Field(ro, "status", "phase") != "Healthy" {
			return fmt.Errorf("not promoted")
		}
		return nil
	})
	if w := weights(); w != "shop-stable=100 shop-canary=0" {
		t.Errorf("route weights after promotion: %s", w)
	}
	if s := selectorHash(t, c, ns, "shop-stable"); s != v2 {
		t.Errorf("stable service on %s, want %s", s, v2)
	}

	// dynamicStableScale: the stable set gives up the pods whose traffic
	// left it (70 % of 4 is 3), and the old version goes at once after
	// promotion, not after the 30 s scaleDownDelaySeconds.
	_, err := c.Dynamic.Resource(rollouts.GVR).Namespace(ns).Patch(context.Background(), "shop", types.MergePatchType,
		[]byte(`{"spec":{"strategy":{"canary":{"dynamicStableScale":true}}}}`), metav1.PatchOptions{})
	must(t, err)
	setImage(t, c, ns, "shop", "registry.example.com/shop:3")
	ro = waitRollout(t, c, ns, "shop", time.Minute, phaseIs("Paused"))
	v3 := testenv.Field(ro, "status", "currentPodHash")
	waitRollout(t, c, ns, "shop", 30*time.Second, func(*unstructured.Unstructured) error {
		if got := replicaSetSizes(t, c, ns); got[v3] != "2/2" || got[v2] != "3/3" {
			return fmt.Errorf("replica sets %v, want %s 2/2 and stable %s 3/3", got, v3, v2)
		}
		return nil
	})
	act(t, c, ns, "shop", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE)
	// Well within the 30 s the old version would otherwise stay up.
	waitRollout(t, c, ns, "shop", 20*time.Second, func(*unstructured.Unstructured) error {
		if got := replicaSetSizes(t, c, ns); got[v3] != "4/4" || !strings.HasPrefix(got[v2], "0/") {
			return fmt.Errorf("replica sets %v, want %s 4/4 and %s scaled down", got, v3, v2)
		}
		return nil
	})
}

// badAnalysisRollout is a canary named name whose analysis step uses
// template; its metrics measure every 100 ms.
func badAnalysisRollout(name, template string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec: {containers: [{name: api, image: "registry.example.com/%[1]s:1"}]}
  strategy:
    canary:
      steps:
        - setWeight: 50
        - analysis: {templates: [{templateName: %[2]s}]}
`, name, template)
}

func prometheusTemplate(name, address, query, condition string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: %s}
spec:
  metrics:
    - name: m
      interval: 100ms
      count: 3
      successCondition: %q
      provider:
        prometheus: {address: %q, query: %q}
`, name, condition, address, query)
}

// TestRolloutsControllerReportsBadInput: a query Prometheus rejects, an
// unreachable Prometheus, a condition that does not compile, a template
// that does not exist and a step list that makes no sense each end in a
// clear status; errors count as errors (not failures) until
// consecutiveErrorLimit; nothing is promoted by mistake and nothing
// crashes.
func TestRolloutsControllerReportsBadInput(t *testing.T) {
	ns := "bad"
	c := rolloutsCluster(t, "badinput", ns)
	traffic := testenv.StartTraffic(t)
	traffic.Serve("api-service", "canary", 0.002)
	prom := testenv.StartPrometheus(t, traffic.Target)
	startRolloutsController(t, c)
	c.CreateAll(t, ns, strings.Join([]string{
		prometheusTemplate("rejected", prom.URL, "sum(rate(http_requests_total[2m]", "result[0] < 0.01"),
		prometheusTemplate("unreachable", "http://127.0.0.1:1", "up", "result[0] == 1"),
		prometheusTemplate("uncompilable", prom.URL, "up", "result[0] <"),
		badAnalysisRollout("rejected", "rejected"),
		badAnalysisRollout("unreachable", "unreachable"),
		badAnalysisRollout("uncompilable", "uncompilable"),
		badAnalysisRollout("missing", "does-not-exist"),
	}, "---\n"))
	for _, name := range []string{"rejected", "unreachable", "uncompilable", "missing"} {
		waitRollout(t, c, ns, name, time.Minute, phaseIs("Healthy"))
		setImage(t, c, ns, name, "registry.example.com/"+name+":2")
	}

	for _, tc := range []struct{ rollout, want string }{
		{"rejected", "consecutiveErrors (5) > consecutiveErrorLimit (4): prometheus " + prom.URL},
		{"unreachable", "connection refused"},
		{"uncompilable", `metric "m": successCondition`},
	} {
		t.Run(tc.rollout, func(t *testing.T) {
			ro := waitRollout(t, c, ns, tc.rollout, time.Minute, phaseIs("Degraded"))
			if msg := testenv.Field(ro, "status", "message"); !strings.Contains(msg, "RolloutAborted") || !strings.Contains(msg, tc.want) {
				t.Errorf("message %q, want RolloutAborted and %q", msg, tc.want)
			}
			canary := testenv.Field(ro, "status", "currentPodHash")
			waitRollout(t, c, ns, tc.rollout, 30*time.Second, func(*unstructured.Unstructured) error {
				if got := replicaSetSizes(t, c, ns)[canary]; !strings.HasPrefix(got, "0/") {
					return fmt.Errorf("canary %s at %s after the abort", canary, got)
				}
				return nil
			})
			run, err := c.Dynamic.Resource(analysisRuns).Namespace(ns).Get(context.Background(), tc.rollout+"-"+canary+"-1", metav1.GetOptions{})
			must(t, err)
			results, _, _ := unstructured.NestedSlice(run.Object, "status", "metricResults")
			if testenv.Field(run, "status", "phase") != "Error" || len(results) == 1 && results[0].(map[string]any)["failed"] != nil {
				t.Errorf("run %s: phase %s, results %v: errors must not count as failures", run.GetName(), testenv.Field(run, "status", "phase"), results)
			}
		})
	}

	t.Run("a template that does not exist holds the rollout and says so", func(t *testing.T) {
		ro := waitRollout(t, c, ns, "missing", time.Minute, phaseIs("Degraded"))
		if msg := testenv.Field(ro, "status", "message"); !strings.Contains(msg, `InvalidSpec: steps[1].analysis: AnalysisTemplate "does-not-exist"`) {
			t.Errorf("message %q", msg)
		}
		if testenv.Field(ro, "status", "stableRS") == testenv.Field(ro, "status", "currentPodHash") {
			t.Fatal("promoted without its analysis")
		}
		c.CreateAll(t, ns, strings.Replace(prometheusTemplate("does-not-exist", prom.URL, "vector(0.001)", "result[0] < 0.01"), "count: 3", "count: 1", 1))
		waitRollout(t, c, ns, "missing", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "phase") != "Healthy" || testenv.Field(ro, "status", "stableRS") != testenv.Field(ro, "status", "currentPodHash") {
				return fmt.Errorf("not promoted once the template exists")
			}
			return nil
		})
	})

	t.Run("an inconclusive analysis pauses until a promote", func(t *testing.T) {
		c.CreateAll(t, ns, strings.Replace(prometheusTemplate("undecided", prom.URL, "vector(0.5)", "result[0] < 0.1"), "      successCondition:",
			"      failureCondition: \"result[0] > 0.9\"\n      successCondition:", 1)+"---\n"+badAnalysisRollout("undecided", "undecided"))
		waitRollout(t, c, ns, "undecided", time.Minute, phaseIs("Healthy"))
		setImage(t, c, ns, "undecided", "registry.example.com/undecided:2")
		ro := waitRollout(t, c, ns, "undecided", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "phase") != "Paused" || !strings.Contains(testenv.Field(ro, "status", "pauseConditions"), "InconclusiveAnalysis") {
				return fmt.Errorf("not paused as inconclusive")
			}
			return nil
		})
		if testenv.Field(ro, "status", "stableRS") == testenv.Field(ro, "status", "currentPodHash") {
			t.Fatal("promoted on an inconclusive analysis")
		}
		act(t, c, ns, "undecided", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE)
		waitRollout(t, c, ns, "undecided", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "phase") != "Healthy" || testenv.Field(ro, "status", "stableRS") != testenv.Field(ro, "status", "currentPodHash") {
				return fmt.Errorf("not promoted past the inconclusive analysis")
			}
			return nil
		})
	})

	t.Run("a step list that makes no sense touches nothing", func(t *testing.T) {
		c.CreateAll(t, ns, `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: nonsense}
spec:
  replicas: 2
  selector: {matchLabels: {app: nonsense}}
  template:
    metadata: {labels: {app: nonsense}}
    spec: {containers: [{name: api, image: "registry.example.com/nonsense:1"}]}
  strategy:
    canary:
      steps:
        - setWeight: 150
        - {pause: {}, setWeight: 10}
`)
		ro := waitRollout(t, c, ns, "nonsense", time.Minute, phaseIs("Degraded"))
		if msg := testenv.Field(ro, "status", "message"); !strings.Contains(msg, "InvalidSpec: spec.strategy.canary.steps[0]: setWeight 150 is not within 0-100") {
			t.Errorf("message %q", msg)
		}
		list, err := c.Dynamic.Resource(replicaSets).Namespace(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=nonsense"})
		must(t, err)
		if len(list.Items) != 0 {
			t.Errorf("an invalid rollout created %d ReplicaSets", len(list.Items))
		}
	})
}

// TestRolloutsControllerTakesTheTemplateFromADeployment: a Rollout with a
// workloadRef runs the Deployment's pod template; a change of the
// Deployment's template is a new revision.
func TestRolloutsControllerTakesTheTemplateFromADeployment(t *testing.T) {
	ns := "ref"
	c := rolloutsCluster(t, "workloadref", ns)
	startRolloutsController(t, c)
	c.CreateAll(t, ns, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry.example.com/web:1"}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  strategy:
    canary:
      steps: [{setWeight: 50}, {pause: {}}]
`)
	ro := waitRollout(t, c, ns, "web", time.Minute, phaseIs("Healthy"))
	v1 := testenv.Field(ro, "status", "stableRS")
	_, err := c.Dynamic.Resource(deployments).Namespace(ns).Patch(context.Background(), "web", types.MergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"registry.example.com/web:2"}]}}}}`), metav1.PatchOptions{})
	must(t, err)
	// Well within the controller's 30 s resync: the Deployment is watched.
	ro = waitRollout(t, c, ns, "web", 10*time.Second, func(ro *unstructured.Unstructured) error {
		if testenv.Field(ro, "status", "currentPodHash") == v1 {
			return fmt.Errorf("the Deployment's new template is not a new revision")
		}
		return nil
	})
	rs, err := c.Dynamic.Resource(replicaSets).Namespace(ns).Get(context.Background(), "web-"+testenv.Field(ro, "status", "currentPodHash"), metav1.GetOptions{})
	must(t, err)
	containers, _, _ := unstructured.NestedSlice(rs.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 || containers[0].(map[string]any)["image"] != "registry.example.com/web:2" {
		t.Errorf("ReplicaSet template: %v", containers)
	}
}

// TestRolloutsControllerLetsAnHPAScaleIt: a Rollout without replicas, as a
// chart writes it for an HPA, gets Argo Rollouts' default of one, so its
// scale subresource works and the HPA's minReplicas reaches the pods.
func TestRolloutsControllerLetsAnHPAScaleIt(t *testing.T) {
	ns := "hpa"
	c := rolloutsCluster(t, "hpa", ns)
	startRolloutsController(t, c)
	c.CreateAll(t, ns, `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry.example.com/web:1"}]}
  strategy:
    canary:
      steps: [{setWeight: 50}, {pause: {}}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: web}
  minReplicas: 3
  maxReplicas: 5
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}]
`)
	// The controller-manager's HPA controller looks every 15 s.
	waitRollout(t, c, ns, "web", 2*time.Minute, func(ro *unstructured.Unstructured) error {
		if testenv.Field(ro, "spec", "replicas") != "3" || testenv.Field(ro, "status", "availableReplicas") != "3" || testenv.Field(ro, "status", "HPAReplicas") != "3" || testenv.Field(ro, "status", "phase") != "Healthy" {
			return fmt.Errorf("spec.replicas %s, available %s, HPAReplicas %s, phase %s",
				testenv.Field(ro, "spec", "replicas"), testenv.Field(ro, "status", "availableReplicas"), testenv.Field(ro, "status", "HPAReplicas"), testenv.Field(ro, "status", "phase"))
		}
		return nil
	})
	// The HPA reads the pods back through the scale subresource.
	testenv.Eventually(t, time.Minute, func() error {
		hpa, err := c.Dynamic.Resource(schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}).Namespace(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if current, _, _ := unstructured.NestedInt64(hpa.Object, "status", "currentReplicas"); current != 3 {
			return fmt.Errorf("HPA sees %d current replicas, want 3", current)
		}
		return nil
	})
}

// TestRolloutsControllerReadsSecretArgs: an AnalysisTemplate arg from a
// Secret authorizes a web metric and a Prometheus metric (a real
// Prometheus behind a proxy that wants the token, as a hosted one does);
// the AnalysisRun keeps the reference, and a failing measurement's message
// shows the value masked.
func TestRolloutsControllerReadsSecretArgs(t *testing.T) {
	ns := "secret-args"
	c := rolloutsCluster(t, "secret-args", ns)
	const token = "t0ken-value"
	authorized := func(next http.Handler) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+token {
				http.Error(rw, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(rw, r)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	metrics := authorized(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte(`{"ok": true}`)) }))
	prom := testenv.StartPrometheus(t)
	promURL, err := url.Parse(prom.URL)
	must(t, err)
	hostedProm := authorized(httputil.NewSingleHostReverseProxy(promURL))
	startRolloutsController(t, c)
	template := func(name, url string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: %s}
spec:
  args: [{name: token, valueFrom: {secretKeyRef: {name: analysis-token, key: token}}}]
  metrics:
    - name: ok
      interval: 200ms
      count: 2
      successCondition: result == true
      provider:
        web:
          url: "%s"
          headers: [{key: Authorization, value: "Bearer {{args.token}}"}]
          jsonPath: "{$.ok}"
`, name, url)
	}
	rollout := func(name, templateName string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec: {containers: [{name: api, image: "registry.example.com/api:1"}]}
  strategy:
    canary:
      steps: [{analysis: {templates: [{templateName: %s}]}}]
`, name, templateName)
	}
	c.CreateAll(t, ns, `apiVersion: v1
kind: Secret
metadata: {name: analysis-token}
stringData: {token: `+token+`}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: hosted-prometheus}
spec:
  args: [{name: token, valueFrom: {secretKeyRef: {name: analysis-token, key: token}}}]
  metrics:
    - name: error-rate
      interval: 200ms
      count: 2
      successCondition: result[0] < 0.01
      provider:
        prometheus:
          address: `+hostedProm.URL+`
          query: vector(0.002)
          headers: [{key: Authorization, value: "Bearer {{args.token}}"}]
---
`+template("authorized", metrics.URL)+"---\n"+template("leaky", "http://127.0.0.1:1/metrics?token={{args.token}}")+
		"---\n"+rollout("api", "authorized")+"---\n"+rollout("leak", "leaky")+"---\n"+rollout("prom", "hosted-prometheus"))
	first := map[string]string{}
	for _, name := range []string{"api", "leak", "prom"} {
		first[name] = testenv.Field(waitRollout(t, c, ns, name, time.Minute, phaseIs("Healthy")), "status", "stableRS")
		setImage(t, c, ns, name, "registry.example.com/api:2")
	}
	promoted := func(name string) *unstructured.Unstructured {
		return waitRollout(t, c, ns, name, time.Minute, func(ro *unstructured.Unstructured) error {
			if stable := testenv.Field(ro, "status", "stableRS"); stable == first[name] || stable != testenv.Field(ro, "status", "currentPodHash") || testenv.Field(ro, "status", "phase") != "Healthy" {
				return fmt.Errorf("not promoted: %s %s", testenv.Field(ro, "status", "phase"), testenv.Field(ro, "status", "message"))
			}
			return nil
		})
	}
	ro, prom2 := promoted("api"), promoted("prom")
	leak := waitRollout(t, c, ns, "leak", time.Minute, phaseIs("Degraded"))
	for _, name := range []string{"api-" + testenv.Field(ro, "status", "currentPodHash") + "-0", "prom-" + testenv.Field(prom2, "status", "currentPodHash") + "-0", "leak-" + testenv.Field(leak, "status", "currentPodHash") + "-0"} {
		run, err := c.Dynamic.Resource(analysisRuns).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		must(t, err)
		data, _ := json.Marshal(run.Object)
		if strings.Contains(string(data), token) || !strings.Contains(string(data), `"secretKeyRef":{"key":"token","name":"analysis-token"}`) {
			t.Fatalf("AnalysisRun %s must keep the reference and never the value:\n%s", name, data)
		}
		switch phase := testenv.Field(run, "status", "phase"); name[:3] {
		case "api", "pro":
			if phase != "Successful" {
				t.Errorf("authorized run: %s %s", phase, testenv.Field(run, "status", "message"))
			}
		default:
			if phase != "Error" || !strings.Contains(string(data), "token=*****") {
				t.Errorf("leaky run: %s, want Error with the token masked in its measurements:\n%s", phase, data)
			}
		}
	}
	if data, _ := json.Marshal(leak.Object); strings.Contains(string(data), token) {
		t.Errorf("the aborted Rollout's status carries the token: %s", data)
	}
}

const nginxManifests = shopServices + `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  annotations: {kubernetes.io/ingress.class: nginx, nginx.ingress.kubernetes.io/proxy-body-size: 8m}
spec:
  tls: [{hosts: [shop.example.com], secretName: shop-tls}]
  rules:
    - host: shop.example.com
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: shop-stable, port: {number: 80}}}}
          - {path: /static, pathType: Prefix, backend: {service: {name: cdn, port: {number: 80}}}}
    - host: admin.example.com
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: admin, port: {number: 80}}}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec: {containers: [{name: api, image: "registry.example.com/shop:1"}]}
  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop-stable
      trafficRouting:
        nginx:
          stableIngress: shop
          additionalIngressAnnotations: {canary-by-header: X-Canary}
      scaleDownDelaySeconds: 5
      abortScaleDownDelaySeconds: 5
      steps:
        - setWeight: 30
        - pause: {}
`

// TestRolloutsControllerRoutesThroughNginx: the canary Ingress is the
// stable one's rules that send to the stable Service, sent to the canary
// Service, weighted with ingress-nginx's annotations as Argo Rollouts
// writes them; the stable Ingress stays as Git wrote it.
func TestRolloutsControllerRoutesThroughNginx(t *testing.T) {
	ns := "nginx"
	c := rolloutsCluster(t, "nginx", ns)
	startRolloutsController(t, c)
	c.CreateAll(t, ns, nginxManifests)
	ingresses := schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}
	stable, err := c.Dynamic.Resource(ingresses).Namespace(ns).Get(context.Background(), "shop", metav1.GetOptions{})
	must(t, err)
	ro := waitRollout(t, c, ns, "shop", time.Minute, phaseIs("Healthy"))
	v1 := testenv.Field(ro, "status", "stableRS")
	canaryIngress := func() *unstructured.Unstructured {
		t.Helper()
		ing, err := c.Dynamic.Resource(ingresses).Namespace(ns).Get(context.Background(), "shop-shop-canary", metav1.GetOptions{})
		must(t, err)
		return ing
	}

	setImage(t, c, ns, "shop", "registry.example.com/shop:2")
	ro = waitRollout(t, c, ns, "shop", time.Minute, phaseIs("Paused"))
	v2 := testenv.Field(ro, "status", "currentPodHash")
	ing := canaryIngress()
	wantAnnotations := map[string]string{
		"kubernetes.io/ingress.class":                  "nginx",
		"nginx.ingress.kubernetes.io/canary":           "true",
		"nginx.ingress.kubernetes.io/canary-weight":    "30",
		"nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
	}
	if got := ing.GetAnnotations(); !maps.Equal(got, wantAnnotations) {
		t.Errorf("canary Ingress annotations %v, want %v", got, wantAnnotations)
	}
	rules, _, _ := unstructured.NestedSlice(ing.Object, "spec", "rules")
	spec, _ := json.Marshal(ing.Object["spec"])
	if len(rules) != 1 || !strings.Contains(string(spec), `"name":"shop-canary"`) || !strings.Contains(string(spec), `"name":"cdn"`) ||
		strings.Contains(string(spec), "shop-stable") || strings.Contains(string(spec), "tls") {
		t.Errorf("canary Ingress spec: %s; want only shop.example.com's rule, sent to shop-canary, without TLS", spec)
	}
	if ref := metav1.GetControllerOf(ing); ref == nil || ref.Kind != "Rollout" || ref.Name != "shop" {
		t.Errorf("canary Ingress owner %v, want the Rollout", ref)
	}
	if got := replicaSetSizes(t, c, ns); got[v2] != "2/2" || got[v1] != "4/4" {
		t.Errorf("routed canary at 30 %%: replica sets %v, want %s 2/2 and stable %s 4/4", got, v2, v1)
	}

	act(t, c, ns, "shop", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE)
	waitRollout(t, c, ns, "shop", time.Minute, func(ro *unstructured.Unstructured) error {
		if testenv.Field(ro, "status", "stableRS") != v2 || testenv.Field(ro, "status", "phase") != "Healthy" {
			return fmt.Errorf("not promoted")
		}
		return nil
	})
	if w := canaryIngress().GetAnnotations()["nginx.ingress.kubernetes.io/canary-weight"]; w != "0" {
		t.Errorf("canary weight after promotion: %q, want 0", w)
	}
	// The old version stays up for scaleDownDelaySeconds while the router
	// catches up, then goes.
	if got := replicaSetSizes(t, c, ns); got[v1] != "4/4" {
		t.Errorf("right after promotion the old version is %s, want 4/4 for scaleDownDelaySeconds", got[v1])
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := replicaSetSizes(t, c, ns); !strings.HasPrefix(got[v1], "0/") {
			return fmt.Errorf("old version %s after scaleDownDelaySeconds", got[v1])
		}
		return nil
	})

	// An aborted canary: its weight goes to 0 at once, its pods stay up
	// abortScaleDownDelaySeconds, then go.
	setImage(t, c, ns, "shop", "registry.example.com/shop:3")
	v3 := testenv.Field(waitRollout(t, c, ns, "shop", time.Minute, phaseIs("Paused")), "status", "currentPodHash")
	act(t, c, ns, "shop", flotillav1.RolloutAction_ROLLOUT_ACTION_ABORT)
	waitRollout(t, c, ns, "shop", time.Minute, phaseIs("Degraded"))
	if w := canaryIngress().GetAnnotations()["nginx.ingress.kubernetes.io/canary-weight"]; w != "0" {
		t.Errorf("canary weight after an abort: %q, want 0", w)
	}
	if got := replicaSetSizes(t, c, ns); got[v3] != "2/2" || got[v2] != "4/4" {
		t.Errorf("right after the abort: replica sets %v, want the canary %s still 2/2 and stable %s 4/4", got, v3, v2)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := replicaSetSizes(t, c, ns); !strings.HasPrefix(got[v3], "0/") {
			return fmt.Errorf("aborted canary %s after abortScaleDownDelaySeconds", got[v3])
		}
		return nil
	})
	after, err := c.Dynamic.Resource(ingresses).Namespace(ns).Get(context.Background(), "shop", metav1.GetOptions{})
	must(t, err)
	if after.GetResourceVersion() != stable.GetResourceVersion() {
		t.Errorf("the stable Ingress was written")
	}
}

// TestRolloutsControllerRollbackWindowAndProgressDeadline: a rollback to
// the revision before the stable one, within rollbackWindow, skips the
// steps (an indefinite pause among them); a revision whose pods never
// become available makes no progress for progressDeadlineSeconds, so the
// rollout is Degraded, ProgressDeadlineExceeded, and with
// progressDeadlineAbort goes back to stable.
func TestRolloutsControllerRollbackWindowAndProgressDeadline(t *testing.T) {
	ns := "window"
	c := rolloutsCluster(t, "window", ns)
	startRolloutsController(t, c)
	manifest := func(name, extra string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: %[1]s}
spec:
  replicas: 2
%[2]s  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec: {containers: [{name: api, image: "registry.example.com/api:1"}]}
  strategy:
    canary:
      steps: [{setWeight: 50}, {pause: {}}]
`, name, extra)
	}
	c.CreateAll(t, ns, manifest("back", "  rollbackWindow: {revisions: 2}\n")+"---\n"+manifest("stuck", "  progressDeadlineSeconds: 5\n  progressDeadlineAbort: true\n"))
	stableIs := func(hash string) func(*unstructured.Unstructured) error {
		return func(ro *unstructured.Unstructured) error {
			if s, p := testenv.Field(ro, "status", "stableRS"), testenv.Field(ro, "status", "phase"); s != hash || p != "Healthy" {
				return fmt.Errorf("stable %s, phase %s: want %s Healthy", s, p, hash)
			}
			return nil
		}
	}

	t.Run("a rollback within the window skips the steps", func(t *testing.T) {
		v1 := testenv.Field(waitRollout(t, c, ns, "back", time.Minute, phaseIs("Healthy")), "status", "stableRS")
		setImage(t, c, ns, "back", "registry.example.com/api:2")
		ro := waitRollout(t, c, ns, "back", time.Minute, phaseIs("Paused"))
		v2 := testenv.Field(ro, "status", "currentPodHash")
		act(t, c, ns, "back", flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE)
		waitRollout(t, c, ns, "back", time.Minute, stableIs(v2))
		// Back to 1: its ReplicaSet is older than the stable one, with none
		// between, so the indefinite pause is skipped.
		setImage(t, c, ns, "back", "registry.example.com/api:1")
		ro = waitRollout(t, c, ns, "back", time.Minute, stableIs(v1))
		if n := testenv.Field(ro, "status", "currentStepIndex"); n != "2" {
			t.Errorf("currentStepIndex %s, want 2 (every step done)", n)
		}
		if got := replicaSetSizes(t, c, ns); got[v1] != "2/2" || !strings.HasPrefix(got[v2], "0/") {
			t.Errorf("replica sets %v", got)
		}
		// Forward to 2 again is no rollback (its ReplicaSet is the newer
		// one): it runs the steps and waits at the pause.
		setImage(t, c, ns, "back", "registry.example.com/api:2")
		waitRollout(t, c, ns, "back", time.Minute, phaseIs("Paused"))
	})

	t.Run("no progress for progressDeadlineSeconds aborts", func(t *testing.T) {
		v1 := testenv.Field(waitRollout(t, c, ns, "stuck", time.Minute, phaseIs("Healthy")), "status", "stableRS")
		// The new pods never get a node.
		_, err := c.Dynamic.Resource(rollouts.GVR).Namespace(ns).Patch(context.Background(), "stuck", types.MergePatchType,
			[]byte(`{"spec":{"template":{"spec":{"nodeSelector":{"no-such":"node"}}}}}`), metav1.PatchOptions{})
		must(t, err)
		ro := waitRollout(t, c, ns, "stuck", time.Minute, phaseIs("Degraded"))
		if msg := testenv.Field(ro, "status", "message"); !strings.Contains(msg, "ProgressDeadlineExceeded") || !strings.Contains(msg, "has timed out progressing") {
			t.Errorf("message %q", msg)
		}
		if a, _, _ := unstructured.NestedBool(ro.Object, "status", "abort"); !a {
			t.Error("progressDeadlineAbort did not abort the rollout")
		}
		conditions, _, _ := unstructured.NestedSlice(ro.Object, "status", "conditions")
		if len(conditions) != 1 || conditions[0].(map[string]any)["type"] != "Progressing" || conditions[0].(map[string]any)["status"] != "False" {
			t.Errorf("conditions %v", conditions)
		}
		waitRollout(t, c, ns, "stuck", time.Minute, func(*unstructured.Unstructured) error {
			if got := replicaSetSizes(t, c, ns); got[v1] != "2/2" {
				return fmt.Errorf("replica sets %v, want %s at 2/2", got, v1)
			}
			return nil
		})
	})
}
