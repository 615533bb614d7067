package rollouts

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func rolloutYAML(t testing.TB, spec string) *unstructured.Unstructured {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte("apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: api, namespace: prod}\nspec:\n"+spec), &obj); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: obj}
}

const base = `  replicas: 10
  selector: {matchLabels: {app: api}}
  template: {metadata: {labels: {app: api}}}
`

func TestParseNamesTheFieldAtFault(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{base + "  strategy: {}", "spec.strategy: set canary or blueGreen"},
		{base + "  strategy: {canary: {steps: [{setWeight: 120}]}}", "spec.strategy.canary.steps[0]: setWeight 120 is not within 0-100"},
		{base + "  strategy: {canary: {steps: [{setWeight: 10, pause: {}}]}}", "spec.strategy.canary.steps[0]: a step sets exactly one"},
		{base + "  strategy: {canary: {steps: [{pause: {duration: soon}}]}}", `spec.strategy.canary.steps[0]: pause.duration: "soon" is not a duration`},
		{base + "  strategy: {canary: {steps: [{experiment: {templates: []}}]}}", "spec.strategy.canary.steps[0]: experiment steps are not supported"},
		{base + "  strategy: {canary: {steps: [{analysis: {}}]}}", "spec.strategy.canary.steps[0]: analysis.templates: required"},
		{base + "  strategy: {canary: {trafficRouting: {istio: {virtualService: {name: x}}}}}", "spec.strategy.canary.trafficRouting: canaryService and stableService are required"},
		{base + "  strategy: {canary: {canaryService: c, stableService: s, trafficRouting: {istio: {virtualService: {name: x}}}}}", "spec.strategy.canary.trafficRouting: the routers supported are nginx and the argoproj-labs/gatewayAPI plugin"},
		{base + "  strategy: {canary: {canaryService: c, stableService: s, trafficRouting: {nginx: {}}}}", "spec.strategy.canary.trafficRouting: nginx.stableIngress is required"},
		{base + "  strategy: {blueGreen: {previewService: p}}", "spec.strategy.blueGreen.activeService is required"},
		{"  strategy: {canary: {}}", "spec.selector is required"},
		{"  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: api, scaleDown: sometimes}\n  strategy: {canary: {}}", `spec.workloadRef.scaleDown: "sometimes" is not one of never, onsuccess and progressively`},
		{base + "  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: api}\n  strategy: {canary: {}}", "spec.template must be empty for a Rollout with a workloadRef"},
		{base + "  strategy: {canary: {steps: [{setWeight: ten}]}}", "spec: json"},
	} {
		_, err := parse(rolloutYAML(t, tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\nerror %v, want %q", tc.spec, err, tc.want)
		}
	}
}

func TestWorkloadRefNeedsNoSelector(t *testing.T) {
	ro, err := parse(rolloutYAML(t, "  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: api, scaleDown: progressively}\n  strategy: {canary: {steps: [{setWeight: 50}]}}"))
	if err != nil || ro.Spec.WorkloadRef.ScaleDown != scaleDownProgressively {
		t.Fatalf("a workloadRef Rollout takes its selector from the Deployment: %v", err)
	}
	fields := ControllerFields([]*unstructured.Unstructured{rolloutYAML(t, "  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: api, scaleDown: onsuccess}\n  strategy: {canary: {}}")})
	if len(fields) != 1 || fields[0].GetKind() != "Deployment" || fields[0].GetName() != "api" || fields[0].GetJsonPointers()[0] != "/spec/replicas" {
		t.Fatalf("the Deployment's replicas are the controller's once it scales it down: %v", fields)
	}
}

func TestCanaryTarget(t *testing.T) {
	ro, err := parse(rolloutYAML(t, base+`  strategy:
    canary:
      steps:
        - setWeight: 10
        - pause: {duration: 5m}
        - setCanaryScale: {replicas: 3}
        - setWeight: 50
        - setCanaryScale: {matchTrafficWeight: true}
        - setWeight: 100
`))
	if err != nil {
		t.Fatal(err)
	}
	r := &rolloutCtx{ro: ro}
	c := ro.Spec.Strategy.Canary
	type target struct{ Weight, Canary, Stable int32 }
	var got []target
	for idx := range int32(len(c.Steps) + 1) {
		w, cn, st := r.canaryTarget(c, idx, false)
		got = append(got, target{w, cn, st})
	}
	// Without a router the replica ratio is the weight: 10 % of 10 is one
	// canary pod; setCanaryScale overrides the size until matchTrafficWeight.
	want := []target{{10, 1, 9}, {10, 1, 9}, {10, 3, 7}, {50, 3, 7}, {50, 5, 5}, {100, 10, 0}, {100, 10, 0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	// With a router the stable set stays whole until promotion.
	if w, cn, st := r.canaryTarget(c, 0, true); w != 10 || cn != 1 || st != 10 {
		t.Errorf("routed at 10 %%: %d %d %d", w, cn, st)
	}
}

func TestScaleDownKeepsAvailability(t *testing.T) {
	for _, tc := range []struct {
		now, want, avail, budget int32
		next, left               int32
	}{
		{10, 8, 10, 2, 8, 0},  // two available may go
		{10, 8, 10, 1, 9, 0},  // only one may
		{10, 8, 7, 0, 8, 0},   // unavailable pods go freely
		{10, 0, 10, 0, 10, 0}, // nothing may go yet
		{4, 0, 0, 0, 0, 0},    // none available: all go
	} {
		budget := tc.budget
		if next := scaleDown(tc.now, tc.want, tc.avail, &budget); next != tc.next || budget != tc.left {
			t.Errorf("scaleDown(%d→%d, %d available, budget %d) = %d (budget %d), want %d (%d)", tc.now, tc.want, tc.avail, tc.budget, next, budget, tc.next, tc.left)
		}
	}
}

func TestControllerFieldsCoverTheRolloutsServicesAndRoute(t *testing.T) {
	ro := rolloutYAML(t, base+`  strategy:
    canary:
      canaryService: api-canary
      stableService: api-stable
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI: {httpRoute: api-route}
`)
	var got []string
	for _, e := range ControllerFields([]*unstructured.Unstructured{ro}) {
		got = append(got, e.GetKind()+"/"+e.GetNamespace()+"/"+e.GetName()+" "+strings.Join(append(e.GetJsonPointers(), e.GetJqPathExpressions()...), ","))
	}
	want := []string{
		"HTTPRoute/prod/api-route .spec.rules[]?.backendRefs[]?.weight",
		"Service/prod/api-canary /spec/selector/rollouts-pod-template-hash",
		"Service/prod/api-stable /spec/selector/rollouts-pod-template-hash",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(base + "  strategy: {canary: {steps: [{setWeight: 10}, {pause: {duration: 1h}}]}}")
	f.Add(base + "  strategy: {blueGreen: {activeService: a, autoPromotionSeconds: 30}}")
	f.Fuzz(func(t *testing.T, spec string) {
		var obj map[string]any
		if yaml.Unmarshal([]byte("spec:\n"+spec), &obj) != nil {
			return
		}
		obj["apiVersion"], obj["kind"] = "argoproj.io/v1alpha1", "Rollout"
		// Whatever the manifest says, parsing and the implicit ignore rules
		// never panic.
		_, _ = parse(&unstructured.Unstructured{Object: obj})
		_ = ControllerFields([]*unstructured.Unstructured{{Object: obj}})
	})
}

func TestExpiredRunsKeepTheNewestPerOutcome(t *testing.T) {
	at := func(minute int) time.Time { return time.Date(2026, 11, 26, 2, minute, 0, 0, time.UTC) }
	var runs []runInfo
	for i := range 8 {
		runs = append(runs, runInfo{name: fmt.Sprintf("ok-%d", i), hash: fmt.Sprintf("h%d", i), succeeded: true, finished: true, created: at(i)})
	}
	runs = append(runs,
		runInfo{name: "failed-old", hash: "x", finished: true, created: at(0)},
		runInfo{name: "running", hash: "old", created: at(0)},
		runInfo{name: "current", hash: "h0", succeeded: true, finished: true, created: at(0)},
	)
	got := expiredRuns(runs, map[string]bool{"h0": true}, 5)
	slices.Sort(got)
	// ok-7..ok-3 are the newest five successful ones; ok-0 and current
	// belong to a kept revision; the failed and the running one stay.
	if want := []string{"ok-1", "ok-2"}; !slices.Equal(got, want) {
		t.Errorf("expired %v, want %v", got, want)
	}
}
