package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// events returns the events of (cluster, app) with reason.
func (e *hubEnv) events(t *testing.T, cluster, app, reason string) []*flotillav1.Event {
	t.Helper()
	all, err := e.Bus.Events(t.Context(), cluster, app, 10000)
	must(t, err)
	var out []*flotillav1.Event
	for _, ev := range all {
		if ev.GetReason() == reason {
			out = append(out, ev)
		}
	}
	return out
}

// waitEventMatching waits for an event of (cluster, app) with reason whose
// message contains every one of want.
func (e *hubEnv) waitEventMatching(t *testing.T, cluster, app, reason string, want ...string) *flotillav1.Event {
	t.Helper()
	var found *flotillav1.Event
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, ev := range e.events(t, cluster, app, reason) {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(ev.GetMessage(), w)
			}
			if ok {
				found = ev
				return nil
			}
		}
		return fmt.Errorf("no %s event for %s/%s with %q", reason, cluster, app, want)
	})
	return found
}

func TestSelfHealAndRetry(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu", Workloads: true})
	cache := t.TempDir()
	parent := t // an agent restarted in a subtest must outlive it
	agent := startAgent(parent, e, prod, map[string]string{"env": "production"}, cache)
	waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
	waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.4.2")
	ctx := context.Background()
	cms := prod.Dynamic.Resource(configmaps).Namespace("production")

	// Each step starts from the state the steps before it left.
	step := newSteps(t)
	step.run("kubectl scale is reverted and reported", func(t *testing.T) {
		scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "worker-service", Namespace: "production"}, Spec: autoscalingv1.ScaleSpec{Replicas: 1}}
		data, err := runtime.DefaultUnstructuredConverter.ToUnstructured(scale)
		must(t, err)
		u := &unstructured.Unstructured{Object: data}
		u.SetAPIVersion("autoscaling/v1")
		u.SetKind("Scale")
		_, err = prod.Dynamic.Resource(deployments).Namespace("production").Update(ctx, u, metav1.UpdateOptions{FieldManager: "kubectl-scale"}, "scale")
		must(t, err)
		ev := e.waitEventMatching(t, "prod-eu", "worker-service", "DriftCorrected", "Deployment.apps/production/worker-service", "spec.replicas", "kubectl-scale")
		testenv.Eventually(t, 10*time.Second, func() error {
			d, err := getObject(t, prod, deployments, "production", "worker-service")
			if err != nil {
				return err
			}
			if r, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas"); r != 4 {
				return fmt.Errorf("replicas %d, want 4 from Git", r)
			}
			return nil
		})
		t.Logf("event: %s", ev.GetMessage())
	})

	step.run("a patch and a delete are reverted; an HPA's replicas are not fought over", func(t *testing.T) {
		// An HPA owns the Rollout's replicas in production: the chart
		// leaves them unset, so a change to them is no drift.
		_, err := prod.Dynamic.Resource(rolloutsGVR).Namespace("production").Patch(ctx, "api-service", types.MergePatchType,
			[]byte(`{"spec":{"replicas":12}}`), metav1.PatchOptions{FieldManager: "horizontal-pod-autoscaler"})
		must(t, err)
		_, err = cms.Patch(ctx, "worker-service-config", types.MergePatchType, []byte(`{"data":{"QUEUE":"hand-edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
		must(t, err)
		e.waitEventMatching(t, "prod-eu", "worker-service", "DriftCorrected", "ConfigMap/production/worker-service-config", "data.QUEUE", "kubectl-edit")
		cm, err := cms.Get(ctx, "worker-service-config", metav1.GetOptions{})
		must(t, err)
		if q, _, _ := unstructured.NestedString(cm.Object, "data", "QUEUE"); q != "jobs-production" {
			t.Errorf("QUEUE = %q after self-heal", q)
		}

		must(t, cms.Delete(ctx, "worker-service-config", metav1.DeleteOptions{}))
		e.waitEventMatching(t, "prod-eu", "worker-service", "DriftCorrected", "ConfigMap/production/worker-service-config: deleted")
		testenv.Eventually(t, 10*time.Second, func() error {
			_, err := cms.Get(ctx, "worker-service-config", metav1.GetOptions{})
			return err
		})

		// Then a drift of a field Git sets, on the same Rollout: its watch
		// brings the two changes in order, so once this one is corrected the
		// replicas were checked too, before or with it.
		_, err = prod.Dynamic.Resource(rolloutsGVR).Namespace("production").Patch(ctx, "api-service", types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"app.kubernetes.io/instance":"hand-edited"}}}`), metav1.PatchOptions{FieldManager: "kubectl-label"})
		must(t, err)
		e.waitEventMatching(t, "prod-eu", "api-service", "DriftCorrected", "Rollout.argoproj.io/production/api-service", "metadata.labels")
		for _, ev := range e.events(t, "prod-eu", "api-service", "DriftCorrected") {
			if strings.Contains(ev.GetMessage(), "replicas") {
				t.Errorf("the HPA-owned replicas were fought over: %s", ev.GetMessage())
			}
		}
		ro, err := getObject(t, prod, rolloutsGVR, "production", "api-service")
		must(t, err)
		if r, _, _ := unstructured.NestedInt64(ro.Object, "spec", "replicas"); r != 12 {
			t.Errorf("Rollout replicas = %d, want the HPA's 12", r)
		}
	})

	step.run("without selfHeal drift is only reported", func(t *testing.T) {
		e.Commit(t, "worker-service: selfHeal off", map[string]string{
			"apps/worker-service.yaml": strings.Replace(readFixture(t, "apps/worker-service.yaml"), "selfHeal: true", "selfHeal: false", 1),
		})
		e.Webhook(t, webhookSecret)
		e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHistoryId() != 2 || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
				return fmt.Errorf("history %d %v", st.GetHistoryId(), st.GetPhase())
			}
			return nil
		})
		_, err := cms.Patch(ctx, "worker-service-config", types.MergePatchType, []byte(`{"data":{"QUEUE":"hand-edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
		must(t, err)
		st := e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetSyncStatus() != flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC {
				return fmt.Errorf("sync status %v", st.GetSyncStatus())
			}
			return nil
		})
		if !strings.Contains(st.GetMessage(), "ConfigMap/production/worker-service-config: data.QUEUE changed by kubectl-edit") {
			t.Errorf("status message: %s", st.GetMessage())
		}
		e.waitEventMatching(t, "prod-eu", "worker-service", "DriftDetected", "data.QUEUE")
		cm, err := cms.Get(ctx, "worker-service-config", metav1.GetOptions{})
		must(t, err)
		if q, _, _ := unstructured.NestedString(cm.Object, "data", "QUEUE"); q != "hand-edited" {
			t.Errorf("selfHeal is off but QUEUE was changed back to %q", q)
		}
	})

	step.run("ignoreDifferences leaves ignored fields alone, and RespectIgnoreDifferences keeps them in a sync", func(t *testing.T) {
		application := strings.Replace(readFixture(t, "apps/worker-service.yaml"), "      - ServerSideApply=true\n", "      - ServerSideApply=true\n      - RespectIgnoreDifferences=true\n", 1)
		application += `  ignoreDifferences:
    - group: apps
      kind: Deployment
      jsonPointers: [/spec/replicas]
    - kind: Secret
      name: no-such-secret
      jsonPointers: [/data]
`
		e.Commit(t, "worker-service: replicas are someone else's", map[string]string{"apps/worker-service.yaml": application})
		e.Webhook(t, webhookSecret)
		st := e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHistoryId() != 3 || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
				return fmt.Errorf("history %d %v: %s", st.GetHistoryId(), st.GetPhase(), st.GetMessage())
			}
			return nil
		})
		if !strings.Contains(st.GetMessage(), "spec.ignoreDifferences[1] (Secret no-such-secret) matches no object") {
			t.Errorf("no warning about the entry that matches nothing: %s", st.GetMessage())
		}
		deps := prod.Dynamic.Resource(deployments).Namespace("production")
		_, err := deps.Patch(ctx, "worker-service", types.MergePatchType, []byte(`{"spec":{"replicas":2}}`), metav1.PatchOptions{FieldManager: "kubectl-scale"}, "scale")
		must(t, err)
		// A drift that is not ignored, after the ignored one: once it is
		// corrected, the replicas change was checked too.
		_, err = cms.Patch(ctx, "worker-service-config", types.MergePatchType, []byte(`{"data":{"QUEUE":"again"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
		must(t, err)
		testenv.Eventually(t, 30*time.Second, func() error {
			for _, ev := range e.events(t, "prod-eu", "worker-service", "DriftCorrected") {
				if ev.GetHistoryId() == 3 && strings.Contains(ev.GetMessage(), "data.QUEUE") {
					return nil
				}
			}
			return fmt.Errorf("the QUEUE drift of history 3 was not corrected")
		})
		for _, ev := range e.events(t, "prod-eu", "worker-service", "DriftCorrected") {
			if strings.Contains(ev.GetMessage(), "spec.replicas") && ev.GetHistoryId() == 3 {
				t.Errorf("an ignored field was corrected: %s", ev.GetMessage())
			}
		}
		// A new commit syncs the app; RespectIgnoreDifferences keeps the
		// live replicas.
		e.Commit(t, "deploy: worker-service 2.4.0", map[string]string{
			"environments/production/worker-service-values.yaml": "replicaCount: 4\nimage:\n  tag: \"2.4.0\"\nqueue: jobs-production\n",
		})
		e.Webhook(t, webhookSecret)
		d := waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.4.0")
		if r, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas"); r != 2 {
			t.Errorf("replicas = %d after a sync, want the live 2 kept (RespectIgnoreDifferences)", r)
		}
	})

	step.run("a change made while the agent was down is healed when it is back", func(t *testing.T) {
		agent.stop()
		_, err := cms.Patch(ctx, "worker-service-config", types.MergePatchType, []byte(`{"data":{"QUEUE":"while-away"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
		must(t, err)
		agent = startAgent(parent, e, prod, map[string]string{"env": "production"}, cache)
		testenv.Eventually(t, 30*time.Second, func() error {
			cm, err := cms.Get(ctx, "worker-service-config", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if q, _, _ := unstructured.NestedString(cm.Object, "data", "QUEUE"); q != "jobs-production" {
				return fmt.Errorf("QUEUE = %q", q)
			}
			return nil
		})
	})

	step.run("retries follow the configured backoff", func(t *testing.T) {
		// Every failed attempt's status as the agent wrote it, by attempt:
		// the bucket keeps only the newest.
		var mu sync.Mutex
		attempts := map[int64]*flotillav1.AppStatus{}
		watching, stopWatching := context.WithCancel(t.Context())
		defer stopWatching()
		_, err := e.Bus.WatchStatuses(watching, func(_ string, st *flotillav1.AppStatus) {
			if st.GetCluster() == "prod-eu" && st.GetApp() == "broken" && st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_FAILED {
				mu.Lock()
				attempts[st.GetRetry().GetAttempt()] = st
				mu.Unlock()
			}
		})
		must(t, err)
		e.Commit(t, "add a broken app", map[string]string{
			"apps/broken.yaml": `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: broken}
spec:
  source: {repoURL: https://github.com/your-org/gitops-config, path: broken}
  destination: {server: https://kubernetes.default.svc, namespace: production}
  syncPolicy:
    automated: {}
    retry: {limit: 2, backoff: {duration: 1s, factor: 2, maxDuration: 1m}}
`,
			"broken/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: broken}\ndata: [not, a, map]\n",
		})
		e.Webhook(t, webhookSecret)
		var failures []*flotillav1.Event
		testenv.Eventually(t, 30*time.Second, func() error {
			failures = e.events(t, "prod-eu", "broken", "SyncFailed")
			if len(failures) < 3 {
				return fmt.Errorf("%d failed attempts", len(failures))
			}
			return nil
		})
		testenv.Eventually(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			for attempt := int64(1); attempt <= 3; attempt++ {
				if attempts[attempt] == nil {
					return fmt.Errorf("no status of failed attempt %d", attempt)
				}
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		// The gaps as the agent timed them, not as this test saw them: the
		// backoff it announced after each attempt, and when the next began.
		for i, want := range []time.Duration{time.Second, 2 * time.Second} {
			failed, next := attempts[int64(i+1)], attempts[int64(i+2)]
			announced := failed.GetRetry().GetNextAttemptAt().AsTime()
			if backoff := announced.Sub(failed.GetFinishedAt().AsTime()); backoff < want-100*time.Millisecond || backoff > want+100*time.Millisecond {
				t.Errorf("attempt %d announced its retry %s after it ended, want %s (duration 1s, factor 2)", i+1, backoff, want)
			}
			if late := next.GetStartedAt().AsTime().Sub(announced); late < -100*time.Millisecond || late > time.Second {
				t.Errorf("attempt %d started %s after the time announced for it, want at that time", i+2, late)
			}
		}
		if final := attempts[3].GetRetry(); final.GetNextAttemptAt() != nil {
			t.Errorf("the last attempt announced another: %v", final)
		}
		if !strings.Contains(failures[2].GetMessage(), "attempt 3 of 3 failed; no retries left") || !strings.Contains(failures[0].GetMessage(), "attempt 1 of 3 failed; retrying at") {
			t.Errorf("messages:\n%s\n%s", failures[0].GetMessage(), failures[2].GetMessage())
		}
		st, err := e.Bus.GetStatus(ctx, "prod-eu", "broken")
		must(t, err)
		if st.GetRetry().GetAttempt() != 3 || st.GetRetry().GetLimit() != 2 {
			t.Errorf("retry status = %v", st.GetRetry())
		}
		if _, err := cms.Get(ctx, "broken", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the broken ConfigMap exists: %v", err)
		}
	})
}
