package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// productionValues are the user story's production values for api-service
// with the pauses and the analysis interval shortened for a test, the
// analysis pointed at the test's Prometheus, and no Ingress (the test
// looks at the rollout alone).
func productionValues(tag, prometheus, steps string) string {
	return fmt.Sprintf(`replicaCount: 10
image:
  tag: %q
autoscaling:
  enabled: false
ingress:
  enabled: false
rollout:
  enabled: true
  steps:
%s
analysis:
  prometheusAddress: %s
  interval: 1s
  count: 5
  failureLimit: 3
`, tag, steps, prometheus)
}

// userStorySteps are the user story's steps with 2 s pauses.
const userStorySteps = `    - setWeight: 10
    - pause: {duration: 2s}
    - analysis:
        templates:
          - templateName: error-rate-check
    - setWeight: 50
    - pause: {duration: 2s}
    - setWeight: 100`

// errorRateQuery is the user story's AnalysisTemplate query.
const errorRateQuery = `sum(rate(http_requests_total{status=~"5..",app="api-service",track="canary"}[2m]))
/
sum(rate(http_requests_total{app="api-service",track="canary"}[2m]))`

// productionCommitter commits production's api-service values, as CI
// does, and tells the hub by webhook.
func (e *hubEnv) productionCommitter(t *testing.T) func(message, values string) {
	return func(message, values string) {
		t.Helper()
		e.Commit(t, message, map[string]string{"environments/production/api-service-values.yaml": values})
		e.Webhook(t, webhookSecret)
	}
}

// rolloutOf is the app status' view of the api-service Rollout.
func rolloutOf(st *flotillav1.AppStatus) *flotillav1.RolloutStatus {
	for _, ro := range st.GetRollouts() {
		if ro.GetName() == "api-service" {
			return ro
		}
	}
	return nil
}

// TestProgressiveDeliveryAgainstPrometheus is the user story's canary,
// run by the agent with the hub in front and a real Prometheus behind:
// the api-service chart promotes through 10 % → analysis → 50 % → 100 %
// while the canary's error rate is 0.2 %; at 5 % the analysis fails per
// failureLimit and the rollout goes back to stable; an indefinite pause
// waits for a promote, across an agent restart.
func TestProgressiveDeliveryAgainstPrometheus(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu", Workloads: true})
	healthyTraffic := testenv.StartTraffic(t)
	healthyTraffic.Serve("api-service", "canary", 0.002)
	healthyTraffic.Serve("api-service", "stable", 0.002)
	prom := testenv.StartPrometheus(t, healthyTraffic.Target)
	prom.WaitQuery(t, errorRateQuery)
	commit := e.productionCommitter(t)
	commit("test: short pauses", productionValues("1.4.2", prom.URL, userStorySteps))
	parent := t // an agent restarted in a subtest must outlive it
	agent := startAgent(parent, e, prod, map[string]string{"env": "production"}, t.TempDir())
	ns := "production"

	ro := waitRollout(t, prod, ns, "api-service", 2*time.Minute, phaseIs("Healthy"))
	stable := testenv.Field(ro, "status", "stableRS")
	if got := replicaSetSizes(t, prod, ns); got[stable] != "10/10" {
		t.Fatalf("first revision: replica sets %v", got)
	}

	// Each step starts from the state the steps before it left.
	step := newSteps(t)
	step.run("0.2 % errors: promoted through every step", func(t *testing.T) {
		commit("deploy: api-service 1.5.0", productionValues("1.5.0", prom.URL, userStorySteps))
		// The fleet view sees the canary at 10 % (the pause after it).
		st := e.WaitStatus(t, "prod-eu", "api-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if ro := rolloutOf(st); ro.GetStep() != 2 || ro.GetCanaryWeight() != 10 {
				return fmt.Errorf("rollout %v", ro)
			}
			return nil
		})
		if s := rolloutOf(st).Summary(); s != "canary step 2/6, 10 %, Paused" {
			t.Errorf("summary %q", s)
		}
		canary := rolloutOf(st).GetCanaryHash()
		if got := replicaSetSizes(t, prod, ns); got[canary] != "1/1" || got[stable] != "9/9" {
			t.Errorf("at 10 %%: replica sets %v, want %s 1/1 and %s 9/9", got, canary, stable)
		}
		waitRollout(t, prod, ns, "api-service", 2*time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "stableRS") != canary || testenv.Field(ro, "status", "phase") != "Healthy" {
				return fmt.Errorf("not promoted")
			}
			return nil
		})
		run, err := prod.Dynamic.Resource(analysisRuns).Namespace(ns).Get(context.Background(), "api-service-"+canary+"-2", metav1.GetOptions{})
		must(t, err)
		results, _, _ := unstructured.NestedSlice(run.Object, "status", "metricResults")
		res, _ := results[0].(map[string]any)
		measurements, _ := res["measurements"].([]any)
		if testenv.Field(run, "status", "phase") != "Successful" || fmt.Sprint(res["successful"]) != "5" || fmt.Sprint(res["failed"]) != "<nil>" {
			t.Fatalf("analysis run: %v", run.Object["status"])
		}
		for _, m := range measurements {
			value := strings.Trim(fmt.Sprint(m.(map[string]any)["value"]), "[]")
			if v, err := strconv.ParseFloat(value, 64); err != nil || v < 0.0015 || v > 0.0025 {
				t.Errorf("measured error rate %q, want about 0.002 from Prometheus", value)
			}
		}
		if got := replicaSetSizes(t, prod, ns); got[canary] != "10/10" || !strings.HasPrefix(got[stable], "0/") {
			t.Errorf("promoted: replica sets %v", got)
		}
		if s, c := selectorHash(t, prod, ns, "api-service-stable"), selectorHash(t, prod, ns, "api-service-canary"); s != canary || c != canary {
			t.Errorf("services on %s and %s after promotion, want %s", s, c, canary)
		}
		e.WaitStatus(t, "prod-eu", "api-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY || rolloutOf(st).GetStableHash() != canary {
				return fmt.Errorf("health %s rollout %v", st.GetHealth(), rolloutOf(st))
			}
			return nil
		})
		e.waitEventMatching(t, "prod-eu", "api-service", "RolloutProgressed", "canary step 3/6", "analysis")
		stable = canary
	})

	step.run("5 % errors: the analysis fails per failureLimit and the rollout goes back to stable", func(t *testing.T) {
		// A Prometheus of its own, so the 2 m rate window holds only 5 %.
		failing := testenv.StartTraffic(t)
		failing.Serve("api-service", "canary", 0.05)
		bad := testenv.StartPrometheus(t, failing.Target)
		bad.WaitQuery(t, errorRateQuery)
		commit("deploy: api-service 1.6.0", productionValues("1.6.0", bad.URL, userStorySteps))
		st := e.WaitStatus(t, "prod-eu", "api-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED {
				return fmt.Errorf("health %s rollout %v", st.GetHealth(), rolloutOf(st))
			}
			return nil
		})
		ro := rolloutOf(st)
		if ro.GetPhase() != "Degraded" || !strings.Contains(ro.GetMessage(), "failed (4) > failureLimit (3)") {
			t.Errorf("rollout status %v", ro)
		}
		ev := e.waitEventMatching(t, "prod-eu", "api-service", "RolloutDegraded", "RolloutAborted", "measurements: error-rate=[0.0", "Failed (4 failed of 4")
		t.Logf("event: %s", ev.GetMessage())
		canary := ro.GetCanaryHash()
		waitRollout(t, prod, ns, "api-service", 30*time.Second, func(*unstructured.Unstructured) error {
			if got := replicaSetSizes(t, prod, ns); !strings.HasPrefix(got[canary], "0/") || got[stable] != "10/10" {
				return fmt.Errorf("replica sets %v", got)
			}
			if c := selectorHash(t, prod, ns, "api-service-canary"); c != stable {
				return fmt.Errorf("canary service on %s, want stable %s", c, stable)
			}
			return nil
		})
		// The same revision is not tried again by itself: a reconcile after
		// the abort leaves it.
		if ro := waitReconciled(t, prod, ns, "api-service"); testenv.Field(ro, "status", "phase") != "Degraded" || testenv.Field(ro, "status", "stableRS") != stable {
			t.Errorf("aborted revision went on: phase %s", testenv.Field(ro, "status", "phase"))
		}
	})

	step.run("an indefinite pause waits for a promote, across an agent restart", func(t *testing.T) {
		steps := "    - setWeight: 20\n    - pause: {}\n    - setWeight: 100"
		commit("deploy: api-service 1.7.0", productionValues("1.7.0", prom.URL, steps))
		st := e.WaitStatus(t, "prod-eu", "api-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if ro := rolloutOf(st); ro.GetStep() != 2 || ro.GetPhase() != "Paused" || st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED {
				return fmt.Errorf("health %s rollout %v, replica sets %v", st.GetHealth(), ro, replicaSetSizes(t, prod, ns))
			}
			return nil
		})
		canary := rolloutOf(st).GetCanaryHash()
		paused := testenv.Field(rollout(t, prod, ns, "api-service"), "status", "pauseConditions")

		agent.stop()
		// While the agent is down the clock moves past the second the pause
		// began in, so a pause the new agent wrote again would differ.
		waitPastPauseStart(t, rollout(t, prod, ns, "api-service"))
		restarted := time.Now()
		agent = startAgent(parent, e, prod, map[string]string{"env": "production"}, t.TempDir())
		// The new agent has synced the app (a no-op) and its rollouts
		// controller has reconciled the Rollout: neither may change it.
		e.WaitStatus(t, "prod-eu", "api-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if !st.GetStartedAt().AsTime().After(restarted) || st.GetMessage() != "already applied" {
				return fmt.Errorf("no sync by the restarted agent yet: %s, started %s", st.GetMessage(), st.GetStartedAt().AsTime())
			}
			return nil
		})
		ro := waitReconciled(t, prod, ns, "api-service")
		if testenv.Field(ro, "status", "currentStepIndex") != "1" || testenv.Field(ro, "status", "pauseConditions") != paused {
			t.Fatalf("after a restart: step %s, pause %s; want step 1 and pause %s", testenv.Field(ro, "status", "currentStepIndex"), testenv.Field(ro, "status", "pauseConditions"), paused)
		}
		if got := replicaSetSizes(t, prod, ns); got[canary] != "2/2" || got[stable] != "8/8" {
			t.Errorf("at 20 %% after a restart: replica sets %v", got)
		}

		out, code := flotilla(t, "rollout", "promote", "api-service", "--cluster", "prod-eu", "--hub", e.APIURL, "--token", operatorToken)
		if code != 0 {
			t.Fatalf("rollout promote: exit %d: %s", code, out)
		}
		waitRollout(t, prod, ns, "api-service", time.Minute, func(ro *unstructured.Unstructured) error {
			if testenv.Field(ro, "status", "stableRS") != canary || testenv.Field(ro, "status", "phase") != "Healthy" {
				return fmt.Errorf("not promoted")
			}
			return nil
		})
		testenv.Eventually(t, 30*time.Second, func() error {
			list, code := flotilla(t, "app", "list", "--hub", e.APIURL, "--token", apiToken)
			if code != 0 || !strings.Contains(list, "canary done") {
				return fmt.Errorf("app list:\n%s", list)
			}
			return nil
		})
	})
}

// waitPastPauseStart waits until the clock is past the whole second the
// Rollout's first pause condition began in (its startTime keeps whole
// seconds), so that a pause written again from now on carries another time.
func waitPastPauseStart(t *testing.T, ro *unstructured.Unstructured) {
	t.Helper()
	conditions, _, _ := unstructured.NestedSlice(ro.Object, "status", "pauseConditions")
	if len(conditions) == 0 {
		t.Fatalf("rollout %s is not paused", ro.GetName())
	}
	first, _ := conditions[0].(map[string]any)
	start, err := time.Parse(time.RFC3339, fmt.Sprint(first["startTime"]))
	must(t, err)
	testenv.Eventually(t, 5*time.Second, func() error {
		if now := time.Now(); now.Sub(start) < 2*time.Second {
			return fmt.Errorf("now %s is within a second of the pause's start %s", now.Format(time.RFC3339Nano), start.Format(time.RFC3339))
		}
		return nil
	})
}

// TestAgentPassesRolloutsThroughWhenToldTo: with --rollouts-controller=false
// (a cluster that runs Argo Rollouts) the agent applies the Rollout and
// leaves it to that controller.
func TestAgentPassesRolloutsThroughWhenToldTo(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	startAgentWith(t, e, prod, map[string]string{"env": "production"}, t.TempDir(), func(o *agent.Options) { o.RolloutsController = false })
	waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.4.2")
	e.WaitStatus(t, "prod-eu", "api-service", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED))
	// No controller will act later: the agent registers "rollouts" among
	// its capabilities exactly when it started its rollouts controller.
	var capabilities []string
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, c := range e.Server.Clusters() {
			if c.Name == "prod-eu" && len(c.Registration.GetCapabilities()) > 0 {
				capabilities = c.Registration.GetCapabilities()
				return nil
			}
		}
		return fmt.Errorf("prod-eu has not registered its capabilities")
	})
	if slices.Contains(capabilities, "rollouts") || !slices.Contains(capabilities, "helm") {
		t.Errorf("capabilities %v: want helm and no rollouts controller", capabilities)
	}
	ro := rollout(t, prod, "production", "api-service")
	if status, ok := ro.Object["status"]; ok {
		t.Errorf("the Rollout got a status from the agent: %v", status)
	}
	list, err := prod.Dynamic.Resource(replicaSets).Namespace("production").List(context.Background(), metav1.ListOptions{})
	must(t, err)
	if len(list.Items) != 0 {
		t.Errorf("the agent created %d ReplicaSets", len(list.Items))
	}
}
