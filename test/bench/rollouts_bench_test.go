package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flotilla-dev/flotilla/agent/rollouts"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// rolloutsCluster is a workloads cluster (ReplicaSets really scale) with
// the agent's rollouts controller running on it, and a namespace.
func rolloutsCluster(b *testing.B, ns, manifests string) *testenv.Cluster {
	b.Helper()
	c := testenv.StartCluster(b, testenv.ClusterOptions{Name: "rollouts", Workloads: true})
	flotillatest.InstallRolloutsCRDs(b, c)
	c.CreateNamespace(b, ns)
	flotillatest.StartRolloutsController(b, c, rollouts.DefaultOptions(), slog.New(slog.DiscardHandler))
	c.CreateAll(b, ns, manifests)
	return c
}

// watchRollout follows a Rollout's status through a watch and calls seen
// with each new status; stop ends it.
func watchRollout(b *testing.B, c *testenv.Cluster, ns, name string, seen func(at time.Time, ro *unstructured.Unstructured)) (stop func()) {
	b.Helper()
	w, err := c.Dynamic.Resource(rollouts.GVR).Namespace(ns).Watch(context.Background(), metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Modified || ev.Type == watch.Added {
				seen(time.Now(), ev.Object.(*unstructured.Unstructured))
			}
		}
	}()
	return w.Stop
}

// status is the Rollout's status field at fields.
func status(ro *unstructured.Unstructured, fields ...string) string {
	return testenv.Field(ro, append([]string{"status"}, fields...)...)
}

func setRolloutImage(b *testing.B, c *testenv.Cluster, ns, name, image string) {
	b.Helper()
	c.SetImage(b, rollouts.GVR, ns, name, "api", image)
}

const abortManifests = `apiVersion: v1
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
metadata: {name: error-rate}
spec:
  metrics:
    - name: error-rate
      interval: 100ms
      count: 20
      failureLimit: 2
      successCondition: result < 0.01
      provider:
        web: {url: "%s", jsonPath: "{$.rate}"}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api}
spec:
  replicas: 4
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: "registry.example.com/api:0"}]}
  strategy:
    canary:
      canaryService: api-canary
      stableService: api-stable
      steps:
        - setWeight: 25
        - analysis: {templates: [{templateName: error-rate}]}
`

// BenchmarkRolloutAbort measures the rollouts controller's abort: from
// the moment the measurement that breaks failureLimit is served (the third
// failed one, failureLimit 2) to the canary ReplicaSet at 0 replicas and
// the canary Service back on the stable pods; 20 canaries on a real
// apiserver with workloads. The metric comes from a web endpoint, so only
// the controller's latency is measured. Flagger's default takes interval ×
// threshold (minutes) for the same decision.
func BenchmarkRolloutAbort(b *testing.B) {
	var failures atomic.Int64
	var broke atomic.Int64 // unix nanos of the breaking measurement
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failures.Add(1) == 3 {
			broke.Store(time.Now().UnixNano())
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"rate": 0.05})
	}))
	defer srv.Close()
	ns := "abort"
	c := rolloutsCluster(b, ns, fmt.Sprintf(abortManifests, srv.URL))
	ctx := context.Background()
	rsets := c.Dynamic.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}).Namespace(ns)
	svcs := c.Dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "services"}).Namespace(ns)
	var latest atomic.Pointer[unstructured.Unstructured]
	stop := watchRollout(b, c, ns, "api", func(_ time.Time, ro *unstructured.Unstructured) { latest.Store(ro) })
	defer stop()
	waitFor := func(what string, ok func() bool) {
		deadline := time.Now().Add(time.Minute)
		for !ok() {
			if time.Now().After(deadline) {
				b.Fatalf("%s: not within a minute", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitFor("first revision healthy", func() bool { ro := latest.Load(); return ro != nil && status(ro, "phase") == "Healthy" })
	for b.Loop() {
		var latencies []time.Duration
		for i := range 20 {
			failures.Store(0)
			broke.Store(0)
			setRolloutImage(b, c, ns, "api", fmt.Sprintf("registry.example.com/api:%d", i+1))
			waitFor("breaking measurement", func() bool { return broke.Load() != 0 })
			start := time.Unix(0, broke.Load())
			var canary, stable string
			waitFor("abort", func() bool {
				ro := latest.Load()
				canary, stable = status(ro, "currentPodHash"), status(ro, "stableRS")
				rs, err := rsets.Get(ctx, "api-"+canary, metav1.GetOptions{})
				if err != nil {
					return false
				}
				replicas, _, _ := unstructured.NestedInt64(rs.Object, "spec", "replicas")
				svc, err := svcs.Get(ctx, "api-canary", metav1.GetOptions{})
				if err != nil {
					return false
				}
				selector, _, _ := unstructured.NestedString(svc.Object, "spec", "selector", rollouts.HashLabel)
				return replicas == 0 && selector == stable && canary != stable
			})
			latencies = append(latencies, time.Since(start))
		}
		b.ReportMetric(float64(percentile(latencies, 0.5).Milliseconds()), "abort-p50-ms")
		b.ReportMetric(float64(percentile(latencies, 0.99).Milliseconds()), "abort-p99-ms")
	}
}

const stepsManifests = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: "registry.example.com/api:0"}]}
  strategy:
    canary:
      steps:
%s`

// BenchmarkRolloutStepOverhead measures what the controller adds to each
// step beyond its configured pause: a canary of 20 pause steps of 200 ms
// (at weight 0, so no pod has to start), from the new revision to the last
// step done, minus the pauses, per step.
func BenchmarkRolloutStepOverhead(b *testing.B) {
	const steps, pause = 20, 200 * time.Millisecond
	ns := "steps"
	c := rolloutsCluster(b, ns, fmt.Sprintf(stepsManifests, strings.Repeat("        - pause: {duration: 200ms}\n", steps)))
	type observation struct {
		at    time.Time
		hash  string
		index string
	}
	seen := make(chan observation, 1024)
	stop := watchRollout(b, c, ns, "api", func(at time.Time, ro *unstructured.Unstructured) {
		seen <- observation{at, status(ro, "currentPodHash"), status(ro, "currentStepIndex")}
	})
	defer stop()
	wait := func(ok func(observation) bool) time.Time {
		timeout := time.After(time.Minute)
		for {
			select {
			case o := <-seen:
				if ok(o) {
					return o.at
				}
			case <-timeout:
				b.Fatal("rollout did not get there within a minute")
			}
		}
	}
	var hash string
	wait(func(o observation) bool { hash = o.hash; return o.index == fmt.Sprint(steps) })
	for b.Loop() {
		var overheads []time.Duration
		for i := range 5 {
			start, previous := time.Now(), hash
			setRolloutImage(b, c, ns, "api", fmt.Sprintf("registry.example.com/api:%d", i+1))
			end := wait(func(o observation) bool { hash = o.hash; return o.index == fmt.Sprint(steps) && o.hash != previous })
			overheads = append(overheads, (end.Sub(start)-steps*pause)/steps)
		}
		b.ReportMetric(float64(percentile(overheads, 0.5).Microseconds())/1000, "step-overhead-p50-ms")
		b.ReportMetric(float64(percentile(overheads, 1).Microseconds())/1000, "step-overhead-max-ms")
	}
}
