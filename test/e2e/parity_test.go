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
	"github.com/flotilla-dev/flotilla/internal/cli"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

var (
	configMaps        = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	analysisTemplates = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysistemplates"}
)

// appIn is an Application of a directory of the fixture repository,
// synced automatically into namespace ns.
func appIn(name, path, ns string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
spec:
  source: {repoURL: https://github.com/your-org/gitops-config, path: %s}
  destination: {server: https://kubernetes.default.svc, namespace: %s}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
`, name, path, ns)
}

// jobCheck is an AnalysisTemplate of the job provider, as Argo Rollouts
// documents it: the measurement is a Job, Successful when it completes.
// Its pod fails (kwok's chaos stage) when the fail arg is "true".
const jobCheck = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: job-check}
spec:
  args: [{name: fail}]
  metrics:
    - name: smoke
      provider:
        job:
          metadata:
            labels: {team: qa}
            annotations: {purpose: smoke-test}
          spec:
            backoffLimit: 0
            template:
              metadata:
                labels: {pod-container-running-failed.stage.kwok.x-k8s.io: "{{args.fail}}"}
              spec:
                restartPolicy: Never
                containers: [{name: smoke, image: busybox, command: [sh, -c, "wget -q -O- http://api/healthz"]}]
`

// jobRollout is a basic canary whose analysis step runs jobCheck.
func jobRollout(version, fail string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: "registry.example.com/api:%s"}]}
  strategy:
    canary:
      steps:
        - setWeight: 50
        - analysis:
            templates: [{templateName: job-check}]
            args: [{name: fail, value: %q}]
`, version, fail)
}

// workloadRefApp is a Deployment and a Rollout with no selector and no
// template of its own that takes both from it, scaling it down as
// scaleDown says.
func workloadRefApp(name, scaleDown string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec: {containers: [{name: web, image: "registry.example.com/web:1"}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: %[1]s}
spec:
  replicas: 2
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: %[1]s, scaleDown: %[2]s}
  strategy:
    canary:
      steps: [{setWeight: 50}, {pause: {duration: 1}}]
`, name, scaleDown)
}

// resourceStatus is the app status' entry for kind/name, or nil.
func resourceStatus(st *flotillav1.AppStatus, kind, name string) *flotillav1.ResourceStatus {
	for _, r := range st.GetResources() {
		if r.GetKind() == kind && r.GetName() == name {
			return r
		}
	}
	return nil
}

// TestArgoParity runs Argo Rollouts and Argo CD manifests of the kinds
// that real repositories use and Flotilla did not run before, through the
// hub and a real agent on a cluster whose Jobs and ReplicaSets really run
// (controller-manager, scheduler, kwok): the job metric provider, passing
// and failing; workloadRef without a selector, with both scaleDown modes;
// an Experiment, refused; a dry-run that fails; Helm hook weights as
// waves; and generateName hooks through a full comparison.
func TestArgoParity(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu", Workloads: true})
	parent := t // the agent restarted in a step must outlive it
	opts := func(o *agent.Options) { o.HealthTimeout = 30 * time.Second }
	a := startAgentWith(parent, e, prod, map[string]string{"env": "production"}, t.TempDir(), opts)
	ctx := context.Background()
	commit := func(message string, files map[string]string) {
		t.Helper()
		e.Commit(t, message, files)
		e.Webhook(t, webhookSecret)
	}

	step := newSteps(t)
	step.run("a job analysis whose Job completes promotes", func(t *testing.T) {
		commit("add jobs", map[string]string{
			"apps/jobs.yaml":     appIn("jobs", "jobs", "jobs"),
			"jobs/template.yaml": jobCheck,
			"jobs/rollout.yaml":  jobRollout("1", "false"),
			"jobs/service.yaml":  "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {selector: {app: api}, ports: [{port: 80}]}\n",
		})
		v1 := testenv.Field(waitRollout(t, prod, "jobs", "api", 2*time.Minute, phaseIs("Healthy")), "status", "stableRS")
		commit("api 2", map[string]string{"jobs/rollout.yaml": jobRollout("2", "false")})
		ro := waitRollout(t, prod, "jobs", "api", 2*time.Minute, func(ro *unstructured.Unstructured) error {
			if s := testenv.Field(ro, "status", "stableRS"); s == v1 || testenv.Field(ro, "status", "phase") != "Healthy" {
				return fmt.Errorf("not promoted")
			}
			return nil
		})
		v2 := testenv.Field(ro, "status", "stableRS")
		run, err := prod.Dynamic.Resource(analysisRuns).Namespace("jobs").Get(ctx, "api-"+v2+"-1", metav1.GetOptions{})
		must(t, err)
		if testenv.Field(run, "status", "phase") != "Successful" {
			t.Fatalf("analysis run: %v", run.Object["status"])
		}
		// The measurement's Job, as Argo Rollouts makes it.
		list, err := prod.Dynamic.Resource(jobs).Namespace("jobs").List(ctx, metav1.ListOptions{LabelSelector: "analysisrun.argoproj.io/uid=" + string(run.GetUID())})
		must(t, err)
		if len(list.Items) != 1 {
			t.Fatalf("%d Jobs for the run, want 1", len(list.Items))
		}
		job := list.Items[0]
		owner := metav1.GetControllerOf(&job)
		if job.GetName() != string(run.GetUID())+".smoke.1" || owner == nil || owner.UID != run.GetUID() || owner.Kind != "AnalysisRun" ||
			job.GetLabels()["team"] != "qa" || job.GetAnnotations()["purpose"] != "smoke-test" ||
			job.GetAnnotations()["analysisrun.argoproj.io/metric-name"] != "smoke" || job.GetAnnotations()["analysisrun.argoproj.io/name"] != run.GetName() {
			t.Errorf("Job %s: owner %v, labels %v, annotations %v", job.GetName(), owner, job.GetLabels(), job.GetAnnotations())
		}
		st := e.WaitStatus(t, "prod-eu", "jobs", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY {
				return fmt.Errorf("health %v", st.GetHealth())
			}
			return nil
		})
		if ro := st.GetRollouts(); len(ro) != 1 || ro[0].GetStableHash() != v2 {
			t.Errorf("the hub's view of the rollout: %v", ro)
		}
	})

	step.run("a job analysis whose Job fails aborts", func(t *testing.T) {
		stable := testenv.Field(rollout(t, prod, "jobs", "api"), "status", "stableRS")
		commit("api 3, whose check fails", map[string]string{"jobs/rollout.yaml": jobRollout("3", "true")})
		ro := waitRollout(t, prod, "jobs", "api", 2*time.Minute, phaseIs("Degraded"))
		if msg := testenv.Field(ro, "status", "message"); !strings.Contains(msg, "RolloutAborted") || !strings.Contains(msg, "Failed") {
			t.Errorf("message %q", msg)
		}
		if testenv.Field(ro, "status", "stableRS") != stable {
			t.Errorf("the failed revision became stable")
		}
		waitRollout(t, prod, "jobs", "api", time.Minute, func(*unstructured.Unstructured) error {
			if got := replicaSetSizes(t, prod, "jobs"); got[stable] != "2/2" || len(got) < 2 {
				return fmt.Errorf("replica sets %v, want %s back at 2/2", got, stable)
			}
			return nil
		})
		e.WaitStatus(t, "prod-eu", "jobs", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED {
				return fmt.Errorf("health %v", st.GetHealth())
			}
			return nil
		})
		// A promote cannot act on an aborted rollout and says so.
		out, code := flotilla(t, "rollout", "promote", "jobs", "--cluster", "prod-eu", "--hub", e.APIURL, "--token", operatorToken)
		if code != cli.ExitFailure || !strings.Contains(out, "cannot promote: the rollout was aborted") {
			t.Errorf("promote of an aborted rollout: exit %d\n%s", code, out)
		}
	})

	step.run("workloadRef without a selector rolls out and scales its Deployment down", func(t *testing.T) {
		commit("add workloads", map[string]string{
			"apps/refs.yaml":        appIn("refs", "refs", "refs"),
			"refs/progressive.yaml": workloadRefApp("gradual", "progressively"),
			"refs/onsuccess.yaml":   workloadRefApp("switch", "onsuccess"),
		})
		for _, name := range []string{"gradual", "switch"} {
			ro := waitRollout(t, prod, "refs", name, 2*time.Minute, phaseIs("Healthy"))
			if sel := testenv.Field(ro, "status", "selector"); !strings.Contains(sel, "app="+name) {
				t.Errorf("%s: status.selector %q, want the Deployment's", name, sel)
			}
			testenv.Eventually(t, time.Minute, func() error {
				d, err := getObject(t, prod, deployments, "refs", name)
				if err != nil {
					return err
				}
				if r := testenv.Field(d, "spec", "replicas"); r != "0" {
					return fmt.Errorf("Deployment %s at %s replicas, want 0", name, r)
				}
				return nil
			})
		}
		// The Deployment's replicas are the controller's now: an operator's
		// sync (which dry-runs everything and writes what differs) does not
		// put them back, so the Deployment is not written at all.
		generation := map[string]int64{}
		for _, name := range []string{"gradual", "switch"} {
			d, err := getObject(t, prod, deployments, "refs", name)
			must(t, err)
			generation[name] = d.GetGeneration()
		}
		if out, code := flotilla(t, "app", "sync", "refs", "--hub", e.APIURL, "--token", operatorToken); code != 0 {
			t.Fatalf("sync: exit %d\n%s", code, out)
		}
		for _, name := range []string{"gradual", "switch"} {
			d, err := getObject(t, prod, deployments, "refs", name)
			must(t, err)
			if r := testenv.Field(d, "spec", "replicas"); r != "0" || d.GetGeneration() != generation[name] {
				t.Errorf("after a sync the Deployment %s has %s replicas, generation %d (was %d)", name, r, d.GetGeneration(), generation[name])
			}
		}
	})

	step.run("an Experiment is refused as unsupported, and nothing of its app is applied", func(t *testing.T) {
		commit("add an experiment", map[string]string{
			"apps/experiment.yaml": appIn("experiment", "experiment", "experiment"),
			"experiment/experiment.yaml": `apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata: {name: compare}
spec:
  duration: 1m
  templates:
    - name: baseline
      selector: {matchLabels: {app: compare}}
      template: {metadata: {labels: {app: compare}}, spec: {containers: [{name: c, image: nginx}]}}
`,
			"experiment/config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: beside-experiment}\n",
		})
		st := e.WaitStatus(t, "prod-eu", "experiment", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_FAILED))
		if !strings.Contains(st.GetMessage(), "Experiment.argoproj.io/compare sync failed: Experiments are not supported") {
			t.Errorf("message %q", st.GetMessage())
		}
		if r := resourceStatus(st, "ConfigMap", "beside-experiment"); r == nil || r.GetAction() != "failed" || !strings.Contains(r.GetMessage(), "not applied") {
			t.Errorf("the ConfigMap's status: %v", r)
		}
		if _, err := getObject(t, prod, configMaps, "experiment", "beside-experiment"); !apierrors.IsNotFound(err) {
			t.Errorf("the ConfigMap beside a refused Experiment was applied: %v", err)
		}
	})

	step.run("a failed dry-run reports no object as created", func(t *testing.T) {
		commit("add a broken app", map[string]string{
			"apps/broken.yaml": appIn("broken", "broken", "broken"),
			"broken/template.yaml": `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: ready
  annotations: {argocd.argoproj.io/sync-wave: "-1"}
spec:
  metrics: [{name: ok, provider: {web: {url: "http://example.invalid"}}}]
`,
			"broken/service.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\n  annotations: {argocd.argoproj.io/sync-wave: \"1\"}\nspec: {ports: [{port: 999999}]}\n",
		})
		st := e.WaitStatus(t, "prod-eu", "broken", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_FAILED))
		for _, r := range st.GetResources() {
			if r.GetAction() == "created" || r.GetAction() == "configured" || r.GetSyncStatus() == flotillav1.SyncStatus_SYNC_STATUS_SYNCED {
				t.Errorf("%s/%s reported %s %v after a dry-run that failed", r.GetKind(), r.GetName(), r.GetAction(), r.GetSyncStatus())
			}
		}
		if r := resourceStatus(st, "AnalysisTemplate", "ready"); r == nil || r.GetAction() != "failed" || !strings.Contains(r.GetMessage(), "not applied") {
			t.Errorf("the AnalysisTemplate's status: %v", r)
		}
		if r := resourceStatus(st, "Service", "broken"); r == nil || !strings.Contains(r.GetMessage(), "dry-run failed") {
			t.Errorf("the Service's status does not name its own failure: %v", r)
		}
		if _, err := getObject(t, prod, analysisTemplates, "broken", "ready"); !apierrors.IsNotFound(err) {
			t.Errorf("the AnalysisTemplate was applied: %v", err)
		}
	})

	step.run("helm.sh/hook-weight orders the waves of objects that are not hooks", func(t *testing.T) {
		cm := func(name, weight string) string {
			return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  annotations: {helm.sh/hook-weight: %q}\n", name, weight)
		}
		commit("add weights", map[string]string{
			"apps/weights.yaml":  appIn("weights", "weights", "weights"),
			"weights/late.yaml":  cm("late", "3"),
			"weights/early.yaml": cm("early", "-2"),
			"weights/plain.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n",
		})
		st := e.WaitStatus(t, "prod-eu", "weights", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED))
		if !strings.Contains(st.GetMessage(), "ran Sync wave -2, Sync wave 0, Sync wave 3") {
			t.Errorf("status message: %s", st.GetMessage())
		}
		var created []time.Time
		for _, name := range []string{"early", "plain", "late"} {
			obj, err := getObject(t, prod, configMaps, "weights", name)
			must(t, err)
			created = append(created, obj.GetCreationTimestamp().Time)
		}
		if created[0].After(created[1]) || created[1].After(created[2]) {
			t.Errorf("created at %v: not in wave order", created)
		}
	})

	step.run("generateName hooks never break the full comparison", func(t *testing.T) {
		// The shape of Argo CD's sync-waves example: a PreSync Job with
		// generateName and no delete policy (so BeforeHookCreation), a
		// named Sync hook in wave 1, and a PostSync Job with generateName.
		hook := func(meta, phase string) string {
			return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  %s
  annotations: {argocd.argoproj.io/hook: %s}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: run, image: busybox}]
`, meta, phase)
		}
		commit("add sync-waves", map[string]string{
			"apps/sync-waves.yaml":       appIn("sync-waves", "sync-waves", "sync-waves"),
			"sync-waves/upgrade.yaml":    hook("generateName: upgrade-sql-schema", "PreSync"),
			"sync-waves/backend.yaml":    strings.ReplaceAll(deployment, "web", "backend"),
			"sync-waves/integ-test.yaml": hook("generateName: integ-test-", "PostSync"),
			"sync-waves/maint-page.yaml": strings.Replace(hook("name: maint-page-up", "Sync"), "annotations: {", "annotations: {argocd.argoproj.io/sync-wave: \"1\", argocd.argoproj.io/hook-delete-policy: BeforeHookCreation, ", 1),
		})
		e.WaitStatus(t, "prod-eu", "sync-waves", 2*time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED))
		// An edit made while the agent is away shows only in the full
		// comparison a restarted agent makes: it must run, and heal it.
		a.stop()
		_, err := prod.Dynamic.Resource(deployments).Namespace("sync-waves").Patch(ctx, "backend", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
		must(t, err)
		a = startAgentWith(parent, e, prod, map[string]string{"env": "production"}, t.TempDir(), opts)
		testenv.Eventually(t, time.Minute, func() error {
			d, err := getObject(t, prod, deployments, "sync-waves", "backend")
			if err != nil {
				return err
			}
			if r := testenv.Field(d, "spec", "replicas"); r != "1" {
				return fmt.Errorf("backend at %s replicas, want Git's 1 back", r)
			}
			return nil
		})
		if logs := a.logs.String(); strings.Contains(logs, "name is required") {
			t.Errorf("a full comparison met a hook without a name:\n%s", logs)
		}
	})
}
