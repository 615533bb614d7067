package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-dev/flotilla/agent"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

var jobs = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}

// app is an Application of a directory in the fixture repository.
func app(name, path string, finalizer bool) string {
	fin := ""
	if finalizer {
		fin = "\n  finalizers: [resources-finalizer.argocd.argoproj.io]"
	}
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s%s
spec:
  source: {repoURL: https://github.com/your-org/gitops-config, path: %s}
  destination: {server: https://kubernetes.default.svc, namespace: hooks}
  syncPolicy:
    automated: {prune: true}
    syncOptions: [CreateNamespace=true]
`, name, fin, path)
}

func job(name, hook, extra string) string {
	return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
  annotations: {argocd.argoproj.io/hook: %s%s}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: run, image: busybox}]
`, name, hook, extra)
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
`

// hasPhase accepts a status whose sync phase is phase.
func hasPhase(phase flotillav1.SyncPhase) func(*flotillav1.AppStatus) error {
	return func(st *flotillav1.AppStatus) error {
		if st.GetPhase() != phase {
			return fmt.Errorf("phase %v: %s", st.GetPhase(), st.GetMessage())
		}
		return nil
	}
}

func TestWavesHooksAndRemoval(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu", Workloads: true})
	// A short health timeout, so a wave that never gets healthy fails soon.
	startAgentWith(t, e, prod, map[string]string{"env": "production"}, t.TempDir(), func(o *agent.Options) { o.HealthTimeout = 15 * time.Second })
	ctx := context.Background()
	get := func(gvr schema.GroupVersionResource, name string) (*unstructured.Unstructured, error) {
		return prod.Dynamic.Resource(gvr).Namespace("hooks").Get(ctx, name, metav1.GetOptions{})
	}

	// Each step starts from the state the steps before it left.
	step := newSteps(t)
	step.run("PreSync runs before wave 0, PostSync after everything is healthy", func(t *testing.T) {
		e.Commit(t, "add hooked", map[string]string{
			"apps/hooked.yaml":       app("hooked", "hooked", true),
			"hooked/migrate.yaml":    job("migrate", "PreSync", ""),
			"hooked/config.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\n  annotations: {argocd.argoproj.io/sync-wave: \"-1\"}\ndata: {k: v}\n",
			"hooked/web.yaml":        deployment,
			"hooked/kept.yaml":       "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  annotations: {argocd.argoproj.io/sync-options: Delete=false}\n",
			"hooked/smoke-test.yaml": job("smoke-test", "PostSync", ", argocd.argoproj.io/hook-delete-policy: HookSucceeded"),
		})
		e.Webhook(t, webhookSecret)
		st := e.WaitStatus(t, "prod-eu", "hooked", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED))
		if !strings.Contains(st.GetMessage(), "ran PreSync wave 0, Sync wave -1, Sync wave 0, PostSync wave 0") {
			t.Errorf("status message: %s", st.GetMessage())
		}
		migrate, err := get(jobs, "migrate")
		must(t, err)
		if n, _, _ := unstructured.NestedInt64(migrate.Object, "status", "succeeded"); n != 1 {
			t.Errorf("the PreSync Job did not complete: %v", migrate.Object["status"])
		}
		web, err := get(deployments, "web")
		must(t, err)
		done, _, _ := unstructured.NestedString(migrate.Object, "status", "completionTime")
		if completed, _ := time.Parse(time.RFC3339, done); web.GetCreationTimestamp().Time.Before(completed) {
			t.Errorf("wave 0 (created %s) started before the PreSync hook completed (%s)", web.GetCreationTimestamp(), done)
		}
		// The PostSync hook succeeded and was deleted (HookSucceeded).
		testenv.Eventually(t, 10*time.Second, func() error {
			if _, err := get(jobs, "smoke-test"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("smoke-test Job still there: %v", err)
			}
			return nil
		})
	})

	step.run("a failing hook runs SyncFail and applies nothing after it", func(t *testing.T) {
		e.Commit(t, "add failing", map[string]string{
			"apps/failing.yaml": strings.Replace(app("failing", "failing", false), "namespace: hooks", "namespace: hooks", 1),
			// No node matches, so the Job's deadline passes and it fails.
			"failing/bad.yaml": strings.Replace(job("bad-migrate", "PreSync", ""), "  backoffLimit: 0\n", "  backoffLimit: 0\n  activeDeadlineSeconds: 2\n", 1) + "      nodeSelector: {no-such: node}\n",
			// A hook with generateName is created anew on every run.
			"failing/notify.yaml": strings.Replace(job("notify", "SyncFail", ""), "  name: notify\n", "  generateName: notify-\n", 1),
			"failing/cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-bad}\n",
		})
		e.Webhook(t, webhookSecret)
		st := e.WaitStatus(t, "prod-eu", "failing", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_FAILED))
		for _, want := range []string{"PreSync wave 0: hook Job/bad-migrate failed", "done before: nothing", "SyncFail hooks ran"} {
			if !strings.Contains(st.GetMessage(), want) {
				t.Errorf("status message lacks %q: %s", want, st.GetMessage())
			}
		}
		list, err := prod.Dynamic.Resource(jobs).Namespace("hooks").List(ctx, metav1.ListOptions{})
		must(t, err)
		var notified []string
		for _, j := range list.Items {
			if strings.HasPrefix(j.GetName(), "notify-") {
				if n, _, _ := unstructured.NestedInt64(j.Object, "status", "succeeded"); n == 1 {
					notified = append(notified, j.GetName())
				}
			}
		}
		if len(notified) != 1 {
			t.Errorf("want one completed SyncFail Job named notify-…, got %v", notified)
		}
		if _, err := get(configmaps, "after-bad"); !apierrors.IsNotFound(err) {
			t.Errorf("wave 0 was applied after a failed PreSync hook: %v", err)
		}
	})

	step.run("a wave that never gets healthy fails the sync and says which waves ran", func(t *testing.T) {
		stuck := strings.Replace(strings.Replace(deployment, "name: web", "name: stuck-web", 1), "spec: {containers:", "spec: {nodeSelector: {no-such: node}, containers:", 1)
		e.Commit(t, "add stuck", map[string]string{
			"apps/stuck.yaml":  app("stuck", "stuck", false),
			"stuck/first.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stuck-first\n  annotations: {argocd.argoproj.io/sync-wave: \"-1\"}\n",
			"stuck/web.yaml":   stuck,
			"stuck/after.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stuck-after\n  annotations: {argocd.argoproj.io/sync-wave: \"1\"}\n",
		})
		e.Webhook(t, webhookSecret)
		st := e.WaitStatus(t, "prod-eu", "stuck", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_FAILED))
		for _, want := range []string{"Sync wave 0 did not finish within 15s", "Deployment.apps/hooks/stuck-web Progressing", "done before: Sync wave -1"} {
			if !strings.Contains(st.GetMessage(), want) {
				t.Errorf("status message lacks %q: %s", want, st.GetMessage())
			}
		}
		if _, err := get(configmaps, "stuck-after"); !apierrors.IsNotFound(err) {
			t.Errorf("wave 1 was applied after wave 0 failed: %v", err)
		}
	})

	step.run("Replace=true replaces the object whole; server-side apply keeps others' fields", func(t *testing.T) {
		cm := func(name, value, annotations string) string {
			return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  annotations: {%s}\ndata: {a: %q}\n", name, annotations, value)
		}
		write := func(value string) {
			e.Commit(t, "replaced: a="+value, map[string]string{
				"apps/replaced.yaml":   app("replaced", "replaced", false),
				"replaced/whole.yaml":  cm("whole", value, "argocd.argoproj.io/sync-options: Replace=true"),
				"replaced/merged.yaml": cm("merged", value, ""),
			})
			e.Webhook(t, webhookSecret)
			testenv.Eventually(t, 30*time.Second, func() error {
				for _, name := range []string{"whole", "merged"} {
					o, err := get(configmaps, name)
					if err != nil {
						return err
					}
					if a, _, _ := unstructured.NestedString(o.Object, "data", "a"); a != value {
						return fmt.Errorf("%s: a=%q, want %q", name, a, value)
					}
				}
				return nil
			})
		}
		write("1")
		for _, name := range []string{"whole", "merged"} {
			_, err := prod.Dynamic.Resource(configmaps).Namespace("hooks").Patch(ctx, name, types.MergePatchType, []byte(`{"data":{"extra":"x"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
			must(t, err)
		}
		write("2")
		whole, err := get(configmaps, "whole")
		must(t, err)
		if _, found, _ := unstructured.NestedString(whole.Object, "data", "extra"); found {
			t.Errorf("Replace=true kept a field Git does not set: %v", whole.Object["data"])
		}
		merged, err := get(configmaps, "merged")
		must(t, err)
		if x, _, _ := unstructured.NestedString(merged.Object, "data", "extra"); x != "x" {
			t.Errorf("server-side apply dropped another manager's field: %v", merged.Object["data"])
		}
	})

	step.run("FailOnSharedResource refuses another app's object", func(t *testing.T) {
		e.Commit(t, "add shared", map[string]string{
			"apps/shared.yaml": strings.Replace(app("shared", "shared", false), "[CreateNamespace=true]", "[CreateNamespace=true, FailOnSharedResource=true]", 1),
			"shared/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata: {k: taken-over}\n",
			"shared/own.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared-own}\n",
		})
		e.Webhook(t, webhookSecret)
		st := e.WaitStatus(t, "prod-eu", "shared", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_FAILED))
		if !strings.Contains(st.GetMessage(), "ConfigMap/hooks/config is managed by application hooked") {
			t.Errorf("status message: %s", st.GetMessage())
		}
		cm, err := get(configmaps, "config")
		must(t, err)
		if v, _, _ := unstructured.NestedString(cm.Object, "data", "k"); v != "v" {
			t.Errorf("the shared ConfigMap was changed: k=%q", v)
		}
		if _, err := get(configmaps, "shared-own"); !apierrors.IsNotFound(err) {
			t.Errorf("part of a refused sync was applied: %v", err)
		}
		e.Commit(t, "drop shared", map[string]string{"apps/shared.yaml": ""})
	})

	step.run("removing an app deletes its objects with the finalizer, orphans them without", func(t *testing.T) {
		e.Commit(t, "add orphaned", map[string]string{
			"apps/orphaned.yaml": app("orphaned", "orphaned", false),
			"orphaned/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: orphan-me}\n",
		})
		e.Webhook(t, webhookSecret)
		e.WaitStatus(t, "prod-eu", "orphaned", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED))
		e.Commit(t, "remove hooked and orphaned", map[string]string{"apps/hooked.yaml": "", "apps/orphaned.yaml": ""})
		e.Webhook(t, webhookSecret)
		testenv.Eventually(t, 30*time.Second, func() error {
			for _, o := range []struct {
				gvr  schema.GroupVersionResource
				name string
			}{{deployments, "web"}, {configmaps, "config"}} {
				if _, err := get(o.gvr, o.name); !apierrors.IsNotFound(err) {
					return fmt.Errorf("%s %s of the removed app still there: %v", o.gvr.Resource, o.name, err)
				}
			}
			return nil
		})
		if _, err := get(configmaps, "kept"); err != nil {
			t.Errorf("the Delete=false ConfigMap was deleted: %v", err)
		}
		// Deleted highest wave first: web (wave 0) before config (wave -1).
		st := e.WaitStatus(t, "prod-eu", "hooked", time.Minute, func(st *flotillav1.AppStatus) error {
			if !strings.Contains(st.GetMessage(), "objects deleted, 1 left running (Delete=false)") {
				return fmt.Errorf("status: %s", st.GetMessage())
			}
			return nil
		})
		var order []string
		for _, r := range st.GetResources() {
			order = append(order, r.GetName())
		}
		if strings.Index(strings.Join(order, ","), "web") > strings.Index(strings.Join(order, ","), "config") {
			t.Errorf("deletion order %v: wave 0 must go before wave -1", order)
		}
		e.WaitStatus(t, "prod-eu", "orphaned", time.Minute, func(st *flotillav1.AppStatus) error {
			if !strings.Contains(st.GetMessage(), "orphaned") {
				return fmt.Errorf("status: %s", st.GetMessage())
			}
			return nil
		})
		if _, err := get(configmaps, "orphan-me"); err != nil {
			t.Errorf("an app without the finalizer had its objects deleted: %v", err)
		}
	})
}
