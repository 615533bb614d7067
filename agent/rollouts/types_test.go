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

func TestWorkloadReplicasAsScaleDownSays(t *testing.T) {
	for _, tc := range []struct {
		mode       string
		wasHealthy bool
		ready      int32
		aborted    bool
		want       int32
		scale      bool
	}{
		{"", false, 2, false, 0, false},                     // never, the default
		{scaleDownNever, true, 4, false, 0, false},          // never
		{scaleDownOnSuccess, false, 3, false, 0, false},     // not until Healthy
		{scaleDownOnSuccess, true, 4, false, 0, true},       // then to zero
		{scaleDownProgressively, false, 0, false, 0, false}, // nothing ready yet
		{scaleDownProgressively, false, 1, false, 3, true},  // as the Rollout's pods come up
		{scaleDownProgressively, false, 3, false, 1, true},
		{scaleDownProgressively, false, 0, true, 4, true}, // aborted: back up
		{scaleDownProgressively, true, 4, false, 0, true}, // Healthy: zero
	} {
		got, scale := workloadReplicas(tc.mode, tc.wasHealthy, 4, tc.ready, tc.aborted)
		if got != tc.want || scale != tc.scale {
			t.Errorf("%q healthy=%t ready=%d aborted=%t: %d %t, want %d %t", tc.mode, tc.wasHealthy, tc.ready, tc.aborted, got, scale, tc.want, tc.scale)
		}
	}
}

func TestCanaryTarget(t *testing.T) {
	routed := `  strategy:
    canary:
      canaryService: api-canary
      stableService: api-stable
      trafficRouting: {nginx: {stableIngress: api}}
      steps:
        - setWeight: 10
        - pause: {duration: 5m}
        - setCanaryScale: {replicas: 3}
        - setWeight: 50
        - setCanaryScale: {matchTrafficWeight: true}
        - setWeight: 100
`
	ro, err := parse(rolloutYAML(t, base+routed))
	if err != nil {
		t.Fatal(err)
	}
	r := &rolloutCtx{ro: ro}
	c := ro.Spec.Strategy.Canary
	type target struct{ Weight, Canary, Stable int32 }
	var got []target
	for idx := range int32(len(c.Steps) + 1) {
		w, cn, st := r.canaryTarget(c, idx, true)
		got = append(got, target{w, cn, st})
	}
	// Behind a router the canary is sized by the weight, setCanaryScale
	// overrides it until matchTrafficWeight, and the stable set stays
	// whole until promotion.
	want := []target{{10, 1, 10}, {10, 1, 10}, {10, 3, 10}, {50, 3, 10}, {50, 5, 10}, {100, 10, 10}, {100, 10, 10}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	// With dynamicStableScale the stable set gives up what traffic left.
	dynamic, err := parse(rolloutYAML(t, base+strings.Replace(routed, "      steps:", "      dynamicStableScale: true\n      steps:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	r = &rolloutCtx{ro: dynamic}
	if _, cn, st := r.canaryTarget(dynamic.Spec.Strategy.Canary, 3, true); cn != 3 || st != 5 {
		t.Errorf("dynamic at 50 %%: canary %d stable %d, want 3 and 5", cn, st)
	}
	r.st.Canary.Weights = &Weights{Stable: WeightDestination{Weight: 90}, Canary: WeightDestination{Weight: 10}}
	if _, _, st := r.canaryTarget(dynamic.Spec.Strategy.Canary, 3, true); st != 9 {
		t.Errorf("dynamic at 50 %% while 90 %% of traffic still goes to stable: stable %d, want 9", st)
	}
	// Without a router the sets split spec.replicas as Argo Rollouts does.
	basic, err := parse(rolloutYAML(t, base+"  strategy: {canary: {steps: [{setWeight: 15}]}}"))
	if err != nil {
		t.Fatal(err)
	}
	r = &rolloutCtx{ro: basic}
	if w, cn, st := r.canaryTarget(basic.Spec.Strategy.Canary, 0, false); w != 15 || cn != 2 || st != 9 {
		t.Errorf("basic at 15 %% of 10 (surge 3): %d %d %d, want 15, 2 canary and 9 stable", w, cn, st)
	}
}

func TestUnsupportedFieldsAreRefusedByName(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{base + "  restartAt: 2026-12-06T00:00:00Z\n  strategy: {canary: {}}", "spec.restartAt is not supported"},
		{base + "  strategy: {canary: {pingPong: {pingService: a, pongService: b}}}", "spec.strategy.canary.pingPong is not supported"},
		{base + "  strategy: {canary: {antiAffinity: {}}}", "spec.strategy.canary.antiAffinity is not supported"},
		{base + "  strategy: {canary: {steps: [{setWeight: 10, extra: 1}]}}", "spec.strategy.canary.steps[0].extra is not supported"},
		{base + "  strategy: {blueGreen: {activeService: a, activeMetadata: {labels: {x: y}}}}", "spec.strategy.blueGreen.activeMetadata is not supported"},
		{base + "  strategy: {canary: {canaryService: c, stableService: s, trafficRouting: {maxTrafficWeight: 1000, nginx: {stableIngress: i}}}}", "spec.strategy.canary.trafficRouting.maxTrafficWeight is not supported"},
		{base + "  strategy: {canary: {steps: [{setCanaryScale: {replicas: 1}}]}}", "SetCanaryScale requires TrafficRouting to be set"},
		{base + "  strategy: {canary: {scaleDownDelaySeconds: 5}}", "Canary scaleDownDelaySeconds can only be used with traffic routing"},
		{base + "  strategy: {canary: {dynamicStableScale: true}}", "Canary dynamicStableScale can only be used with traffic routing"},
		{base + "  strategy: {canary: {maxSurge: 0, maxUnavailable: \"0%\"}}", "MaxSurge and MaxUnavailable both can not be zero"},
	} {
		_, err := parse(rolloutYAML(t, tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\nerror %v, want %q", tc.spec, err, tc.want)
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
	got := expiredRuns(runs, map[string]bool{"h0": true}, 5, 5)
	slices.Sort(got)
	// ok-7..ok-3 are the newest five successful ones; ok-0 and current
	// belong to a kept revision; the failed and the running one stay.
	if want := []string{"ok-1", "ok-2"}; !slices.Equal(got, want) {
		t.Errorf("expired %v, want %v", got, want)
	}
	// spec.analysis limits each outcome apart: 2 successful, 0 failed.
	ro, err := parse(rolloutYAML(t, base+"  analysis: {successfulRunHistoryLimit: 2, unsuccessfulRunHistoryLimit: 0}\n  strategy: {canary: {}}"))
	if err != nil {
		t.Fatal(err)
	}
	successful, unsuccessful := ro.runHistoryLimits()
	got = expiredRuns(runs, map[string]bool{"h0": true}, successful, unsuccessful)
	slices.Sort(got)
	if want := []string{"failed-old", "ok-1", "ok-2", "ok-3", "ok-4", "ok-5"}; !slices.Equal(got, want) {
		t.Errorf("with limits 2 and 0: expired %v, want %v", got, want)
	}
}
