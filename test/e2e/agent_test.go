package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/flotilla-dev/flotilla/agent"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

var (
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	configmaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	ingresses   = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}
	rolloutsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
)

// runningAgent is an agent running in the test process against a cluster.
type runningAgent struct {
	stop func()
	// logs holds what the agent logged.
	logs *syncBuffer
	done chan error
}

// exited reports whether the agent's Run returned.
func (a *runningAgent) exited() bool {
	select {
	case err := <-a.done:
		a.done <- err
		return true
	default:
		return false
	}
}

func startAgent(t *testing.T, e *hubEnv, c *testenv.Cluster, labels map[string]string, cacheDir string) *runningAgent {
	t.Helper()
	return startAgentWithMetrics(t, e, c, labels, cacheDir, "")
}

func startAgentWithMetrics(t *testing.T, e *hubEnv, c *testenv.Cluster, labels map[string]string, cacheDir, metricsAddr string) *runningAgent {
	t.Helper()
	return startAgentWith(t, e, c, labels, cacheDir, func(o *agent.Options) { o.MetricsAddr = metricsAddr })
}

// startAgentWith runs an agent whose options edit may change.
func startAgentWith(t *testing.T, e *hubEnv, c *testenv.Cluster, labels map[string]string, cacheDir string, edit func(*agent.Options)) *runningAgent {
	t.Helper()
	opts := agent.DefaultOptions()
	opts.Credentials = e.Credentials(t, c.Name, labels)
	opts.Kubeconfig, opts.CacheDir, opts.HealthTimeout, opts.MetricsAddr = c.Kubeconfig, cacheDir, time.Minute, ""
	edit(&opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{buf: &bytes.Buffer{}}
	go func() {
		done <- agent.Run(ctx, opts, slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, logs), nil)).With("agent", c.Name))
	}()
	a := &runningAgent{logs: logs, done: done}
	stopped := false
	a.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", c.Name, err)
		}
	}
	t.Cleanup(a.stop)
	return a
}

// settledResourceVersions is resourceVersions once the rollouts
// controller has written the fixture's Rollout's status for its
// generation: what the agent will write of its own accord is written.
func settledResourceVersions(t *testing.T, c *testenv.Cluster) map[string]string {
	t.Helper()
	waitRollout(t, c, "production", "api-service", time.Minute, func(ro *unstructured.Unstructured) error {
		if got, want := testenv.Field(ro, "status", "observedGeneration"), fmt.Sprint(ro.GetGeneration()); got != want {
			return fmt.Errorf("observed generation %q, want %s", got, want)
		}
		return nil
	})
	return resourceVersions(t, c)
}

func getObject(t *testing.T, c *testenv.Cluster, gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	return c.Dynamic.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
}

// waitImage waits until the object runs an image ending in want.
func waitImage(t *testing.T, c *testenv.Cluster, gvr schema.GroupVersionResource, ns, name, want string) *unstructured.Unstructured {
	t.Helper()
	return c.WaitImage(t, gvr, ns, name, want, time.Minute)
}

func TestAgentsApplyEachEnvironment(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	staging := testenv.StartCluster(t, testenv.ClusterOptions{Name: "staging-1"})
	prodCache := t.TempDir()
	prodAgent := startAgent(t, e, prod, map[string]string{"env": "production"}, prodCache)
	startAgent(t, e, staging, map[string]string{"env": "staging"}, t.TempDir())

	// Each step starts from the state the steps before it left.
	step := newSteps(t)
	step.run("each cluster gets its environment's values", func(t *testing.T) {
		ro := waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.4.2")
		// Production autoscales: Git leaves replicas to the HPA (the rollouts
		// controller writes Argo's default of one), so the sync owns none.
		for _, f := range ro.GetManagedFields() {
			if f.Manager == "flotilla" && f.FieldsV1 != nil && strings.Contains(f.FieldsV1.GetRawString(), `"f:replicas"`) {
				t.Errorf("the sync owns the Rollout's replicas: %s", f.FieldsV1.GetRawString())
			}
		}
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
		waitImage(t, prod, deployments, "ml", "ml-inference", "ml-inference:0.9.1")
		waitImage(t, staging, deployments, "staging", "api-service", "api-service:1.5.0-rc.1")
		waitImage(t, staging, deployments, "staging", "worker-service", "worker-service:2.4.0-rc.2")
		cm, err := getObject(t, staging, configmaps, "staging", "worker-service-config")
		must(t, err)
		if q, _, _ := unstructured.NestedString(cm.Object, "data", "QUEUE"); q != "jobs-staging" {
			t.Errorf("staging queue = %q", q)
		}
		if _, err := getObject(t, staging, deployments, "ml", "ml-inference"); !apierrors.IsNotFound(err) {
			t.Errorf("staging must not run the production-only ml-inference: %v", err)
		}
		st := e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED || st.GetSyncStatus() != flotillav1.SyncStatus_SYNC_STATUS_SYNCED {
				return fmt.Errorf("status %v %v: %s", st.GetPhase(), st.GetSyncStatus(), st.GetMessage())
			}
			return nil
		})
		if len(st.GetResources()) != 2 || st.GetHistoryId() != 1 {
			t.Errorf("status = %v", st)
		}
		_, sc, err := e.desired(t, "prod-eu", "worker-service")
		must(t, err)
		if !sc.IsValid() || st.GetTraceId() != sc.TraceID().String() {
			t.Errorf("the sync's trace %s does not continue the hub's trace (%s)", st.GetTraceId(), sc.TraceID())
		}
	})

	step.run("an image tag commit updates both clusters", func(t *testing.T) {
		e.Commit(t, "deploy: worker-service 2.5.0", map[string]string{
			"environments/production/worker-service-values.yaml": "replicaCount: 4\nimage:\n  tag: \"2.5.0\"\nqueue: jobs-production\n",
			"environments/staging/worker-service-values.yaml":    "replicaCount: 1\nimage:\n  tag: \"2.5.0\"\nqueue: jobs-staging\n",
		})
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.5.0")
		waitImage(t, staging, deployments, "staging", "worker-service", "worker-service:2.5.0")
	})

	step.run("a file removed from Git is pruned", func(t *testing.T) {
		if _, err := getObject(t, prod, ingresses, "production", "api-service"); err != nil {
			t.Fatalf("ingress not applied before the test: %v", err)
		}
		e.Commit(t, "drop the api ingress", map[string]string{"charts/api-service/templates/ingress.yaml": ""})
		e.Webhook(t, webhookSecret)
		for _, c := range []*testenv.Cluster{prod, staging} {
			ns := map[string]string{"prod-eu": "production", "staging-1": "staging"}[c.Name]
			testenv.Eventually(t, 60*time.Second, func() error {
				if _, err := getObject(t, c, ingresses, ns, "api-service"); !apierrors.IsNotFound(err) {
					return fmt.Errorf("ingress in %s still there: %v", c.Name, err)
				}
				return nil
			})
		}
	})

	step.run("a bad commit applies nothing and reports why", func(t *testing.T) {
		bad := strings.Replace(readFixture(t, "charts/worker-service/templates/deployment.yaml"),
			"replicas: {{ .Values.replicaCount }}", "replicas: many", 1)
		e.Commit(t, "break worker replicas", map[string]string{
			"charts/worker-service/templates/deployment.yaml":    bad,
			"environments/production/worker-service-values.yaml": "replicaCount: 4\nimage:\n  tag: \"2.6.0\"\nqueue: jobs-changed\n",
		})
		e.Webhook(t, webhookSecret)
		st := e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED {
				return fmt.Errorf("phase %v (history %d)", st.GetPhase(), st.GetHistoryId())
			}
			return nil
		})
		if !strings.Contains(st.GetMessage(), "Deployment.apps/production/worker-service dry-run failed") || !strings.Contains(st.GetMessage(), "replicas") {
			t.Errorf("status message does not name the object and field: %s", st.GetMessage())
		}
		cm, err := getObject(t, prod, configmaps, "production", "worker-service-config")
		must(t, err)
		if q, _, _ := unstructured.NestedString(cm.Object, "data", "QUEUE"); q != "jobs-production" {
			t.Errorf("the ConfigMap of a failed revision was applied: QUEUE=%q", q)
		}
		d, err := getObject(t, prod, deployments, "production", "worker-service")
		must(t, err)
		if !strings.HasSuffix(testenv.Image(d), ":2.5.0") {
			t.Errorf("the last good Deployment was touched: %s", testenv.Image(d))
		}
		// Fix it again for the next steps.
		e.Commit(t, "fix worker replicas", map[string]string{
			"charts/worker-service/templates/deployment.yaml":    readFixture(t, "charts/worker-service/templates/deployment.yaml"),
			"environments/production/worker-service-values.yaml": "replicaCount: 4\nimage:\n  tag: \"2.6.0\"\nqueue: jobs-production\n",
		})
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.6.0")
	})

	step.run("a restarted agent converges without duplicate writes", func(t *testing.T) {
		prodAgent.stop()
		e.Commit(t, "deploy: worker-service 2.7.0 while the agent is down", map[string]string{
			"environments/production/worker-service-values.yaml": "replicaCount: 4\nimage:\n  tag: \"2.7.0\"\nqueue: jobs-production\n",
		})
		e.Webhook(t, webhookSecret)
		e.waitDesired(t, "prod-eu", "worker-service", func(ds *flotillav1.DesiredState) error {
			if !strings.Contains(ds.GetSource().GetCommitMessage(), "2.7.0") {
				return fmt.Errorf("not published yet")
			}
			return nil
		})
		prodAgent = startAgent(t, e, prod, map[string]string{"env": "production"}, prodCache)
		d := waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.7.0")
		e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if !strings.Contains(st.GetMessage(), "configured") {
				return fmt.Errorf("status: %s", st.GetMessage())
			}
			return nil
		})
		before := settledResourceVersions(t, prod)
		prodAgent.stop()
		dryRuns := fullComparisonRequests(t, prod)
		restarted := time.Now()
		prodAgent = startAgent(t, e, prod, map[string]string{"env": "production"}, prodCache)
		e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetMessage() != "already applied" || !st.GetStartedAt().AsTime().After(restarted) {
				return fmt.Errorf("status: %s", st.GetMessage())
			}
			return nil
		})
		// A second after a no-op the agent compares every object with Git
		// in full, by server-side dry-run, and heals what drifted: only
		// once it has may the cluster be read for writes.
		waitFullComparison(t, prod, dryRuns)
		after := resourceVersions(t, prod)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("a restart with nothing new wrote to the cluster:\nbefore %v\nafter  %v", before, after)
		}
		for _, app := range []string{"api-service", "worker-service", "ml-inference"} {
			for _, ev := range e.events(t, "prod-eu", app, "DriftCorrected") {
				if ev.GetTime().AsTime().After(restarted) {
					t.Errorf("a restart with nothing new corrected drift: %s", ev.GetMessage())
				}
			}
		}
		_ = d
	})
}

func TestAgentRefusesBadInput(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	metricsAddr := ln.Addr().String()
	ln.Close()
	startAgentWithMetrics(t, e, prod, map[string]string{"env": "production"}, t.TempDir(), metricsAddr)
	waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")

	t.Run("a kind the cluster does not know", func(t *testing.T) {
		e.Commit(t, "add widgets", map[string]string{
			"apps/widgets.yaml": `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: widgets}
spec:
  source: {repoURL: https://github.com/your-org/gitops-config, path: widgets}
  destination: {server: https://kubernetes.default.svc, namespace: production}
`,
			"widgets/widget.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: widget-config}\n",
		})
		e.Webhook(t, webhookSecret)
		st := e.WaitStatus(t, "prod-eu", "widgets", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED {
				return fmt.Errorf("phase %v", st.GetPhase())
			}
			return nil
		})
		if !strings.Contains(st.GetMessage(), "Widget.example.com/w1 dry-run failed: no matches for kind") {
			t.Errorf("message does not name the unknown kind: %s", st.GetMessage())
		}
		if _, err := getObject(t, prod, configmaps, "production", "widget-config"); !apierrors.IsNotFound(err) {
			t.Errorf("the ConfigMap beside the unknown kind was applied: %v", err)
		}
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, metric := range []string{`flotilla_agent_syncs_total{result="failed"} 1`, `flotilla_agent_syncs_total{result="succeeded"}`, "flotilla_agent_object_writes_total"} {
			if !strings.Contains(string(body), metric) {
				t.Errorf("agent /metrics lacks %s", metric)
			}
		}
	})

	t.Run("a desired state not signed by the hub", func(t *testing.T) {
		_, rogue, _ := ed25519.GenerateKey(rand.Reader)
		env, err := signing.NewSigner(rogue).Sign(&flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "worker-service", HistoryId: 999,
			Artifact: &flotillav1.Artifact{Digest: "sha256:" + strings.Repeat("0", 64)}})
		must(t, err)
		mustPublish(t, e.Bus, []bus.DesiredPut{{Cluster: "prod-eu", App: "worker-service", State: env}})
		st := e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if !strings.Contains(st.GetMessage(), "desired state refused") {
				return fmt.Errorf("status: %s", st.GetMessage())
			}
			return nil
		})
		if !strings.Contains(st.GetMessage(), "unknown key") {
			t.Errorf("refusal does not say why: %s", st.GetMessage())
		}
		waitEvent(t, e.Bus, "prod-eu", "worker-service", "DesiredStateRefused")
		d, err := getObject(t, prod, deployments, "production", "worker-service")
		must(t, err)
		if !strings.HasSuffix(testenv.Image(d), ":2.3.0") {
			t.Errorf("the running Deployment changed: %s", testenv.Image(d))
		}
	})
}

// managedResources are the kinds of the objects the agent manages in the
// fixture's production environment; resourceVersions reads them.
var managedResources = []schema.GroupVersionResource{deployments, configmaps, rolloutsGVR}

// fullComparisonRequests counts the server-side dry-run applies the
// apiserver served, by resource: a full comparison makes one per object.
func fullComparisonRequests(t *testing.T, c *testenv.Cluster) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, gvr := range managedResources {
		out[gvr.Resource] = c.APIRequests(t, map[string]string{"verb": "APPLY", "dry_run": "All", "resource": gvr.Resource})
	}
	return out
}

// waitFullComparison waits until the apiserver has served, since before
// (fullComparisonRequests), a dry-run apply for every object the agent
// manages: the full comparison after a start has compared them all.
func waitFullComparison(t *testing.T, c *testenv.Cluster, before map[string]float64) {
	t.Helper()
	managed := map[string]int{}
	for _, gvr := range managedResources {
		list, err := c.Dynamic.Resource(gvr).List(context.Background(), metav1.ListOptions{LabelSelector: "flotilla.dev/app"})
		must(t, err)
		managed[gvr.Resource] = len(list.Items)
	}
	testenv.Eventually(t, time.Minute, func() error {
		now := fullComparisonRequests(t, c)
		for resource, n := range managed {
			if got := now[resource] - before[resource]; got < float64(n) {
				return fmt.Errorf("%s: %.0f dry-run applies since the restart, want one for each of the %d managed", resource, got, n)
			}
		}
		return nil
	})
}

// resourceVersions of the production objects the agent manages.
func resourceVersions(t *testing.T, c *testenv.Cluster) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, gvr := range managedResources {
		list, err := c.Dynamic.Resource(gvr).Namespace("production").List(context.Background(), metav1.ListOptions{LabelSelector: "flotilla.dev/app"})
		must(t, err)
		for _, o := range list.Items {
			out[gvr.Resource+"/"+o.GetName()] = o.GetResourceVersion()
		}
	}
	return out
}

// TestAgentWaitsForItsAPIServer starts an agent whose API server is down:
// it must keep trying, not exit, until it is stopped.
func TestAgentWaitsForItsAPIServer(t *testing.T) {
	e := startHub(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	dead := ln.Addr().String()
	ln.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: down, cluster: {server: "https://`+dead+`", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: down, user: u}}]
current-context: c
`), 0o600))
	opts := agent.DefaultOptions()
	opts.Credentials, opts.Kubeconfig, opts.CacheDir, opts.MetricsAddr = e.Credentials(t, "down-1", nil), kubeconfig, t.TempDir(), ""
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, opts, slog.New(slog.NewTextHandler(&syncBuffer{buf: &logs}, nil))) }()
	select {
	case err := <-done:
		t.Fatalf("agent exited while its API server was down: %v", err)
	case <-time.After(3 * time.Second):
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "waiting to prepare the cluster") {
		t.Errorf("the agent did not say what it waits for:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  gosync.Mutex
	buf *bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
