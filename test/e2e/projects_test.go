package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

var clusterRoles = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}

func tenantApp(name, namespace string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: %s, namespace: argocd}
spec:
  project: tenants
  source: {repoURL: https://github.com/your-org/gitops-config, targetRevision: HEAD, path: manifests/%s}
  destination: {server: https://kubernetes.default.svc, namespace: %s}
  syncPolicy:
    automated: {prune: true}
    syncOptions: [CreateNamespace=true]
`, name, name, namespace)
}

const tenantDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:tenant}]}
`

const tenantClusterRole = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tenant-a-admin}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
`

// TestAppProjectsForbidWhatTheyDoNotPermit syncs applications of the
// fixture's tenants project into a real cluster: one that stays inside it
// lands; one with a cluster-scoped object applies nothing and says which
// project, rule and object refused it; one aimed outside the project's
// destinations is refused by the hub; the AppProject itself is never
// applied.
func TestAppProjectsForbidWhatTheyDoNotPermit(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	startAgent(t, e, prod, map[string]string{"env": "production"}, t.TempDir())

	e.Commit(t, "tenant apps", map[string]string{
		"apps/tenant-a.yaml":           tenantApp("tenant-a", "tenant-a"),
		"manifests/tenant-a/web.yaml":  tenantDeployment,
		"manifests/tenant-a/role.yaml": tenantClusterRole,
		"apps/tenant-b.yaml":           tenantApp("tenant-b", "tenant-b"),
		"manifests/tenant-b/web.yaml":  tenantDeployment,
		"apps/escapee.yaml":            tenantApp("escapee", "kube-system"),
		"manifests/escapee/web.yaml":   tenantDeployment,
	})
	e.Webhook(t, webhookSecret)

	step := newSteps(t)
	step.run("an app inside its project lands", func(t *testing.T) {
		waitImage(t, prod, deployments, "tenant-b", "web", "nginx:tenant")
	})

	step.run("a cluster-scoped object refuses the whole app, naming project, rule and object", func(t *testing.T) {
		st := e.WaitStatus(t, "prod-eu", "tenant-a", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED {
				return fmt.Errorf("phase %v: %s", st.GetPhase(), st.GetMessage())
			}
			return nil
		})
		for _, want := range []string{`AppProject "tenants"`, "spec.clusterResourceWhitelist", "tenant-a-admin", "nothing was applied"} {
			if !strings.Contains(st.GetMessage(), want) {
				t.Errorf("status %q does not name %q", st.GetMessage(), want)
			}
		}
		if _, err := getObject(t, prod, deployments, "tenant-a", "web"); !apierrors.IsNotFound(err) {
			t.Errorf("tenant-a's Deployment was applied: %v", err)
		}
		if _, err := prod.Dynamic.Resource(clusterRoles).Get(t.Context(), "tenant-a-admin", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the forbidden ClusterRole was applied: %v", err)
		}
	})

	step.run("a destination outside the project is refused at the hub", func(t *testing.T) {
		e.waitEventMatching(t, bus.HubEventsCluster, "escapee", flotillav1.ReasonAppInvalid,
			`AppProject "tenants"`, "spec.destination", `namespace "kube-system"`)
		if _, err := e.Bus.GetDesired(t.Context(), "prod-eu", "escapee"); err == nil {
			t.Error("escapee was published")
		}
	})

	auth := []string{"--hub", e.APIURL, "--token", apiToken}
	step.run("the CLI lists a refused app with why, and its events", func(t *testing.T) {
		testenv.Eventually(t, 30*time.Second, func() error {
			out, code := flotilla(t, append([]string{"app", "list"}, auth...)...)
			if code != 0 || !regexpMatch(`-\s+escapee\s+Refused`, out) || !strings.Contains(out, `escapee: `) || !strings.Contains(out, `namespace "kube-system"`) {
				return fmt.Errorf("exit %d:\n%s", code, out)
			}
			return nil
		})
		out, code := flotilla(t, append([]string{"app", "get", "escapee"}, auth...)...)
		if code != 0 || !strings.Contains(out, "AppProject") {
			t.Errorf("app get escapee: exit %d:\n%s", code, out)
		}
		out, code = flotilla(t, append([]string{"events", "--app", "escapee"}, auth...)...)
		if code != 0 || !strings.Contains(out, flotillav1.ReasonAppInvalid) {
			t.Errorf("events --app escapee: exit %d:\n%s", code, out)
		}
	})

	step.run("once accepted, the app is no longer listed as refused", func(t *testing.T) {
		e.Commit(t, "escapee: a tenant namespace", map[string]string{"apps/escapee.yaml": tenantApp("escapee", "tenant-escapee")})
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, deployments, "tenant-escapee", "web", "nginx:tenant")
		testenv.Eventually(t, 30*time.Second, func() error {
			out, _ := flotilla(t, append([]string{"app", "list"}, auth...)...)
			if strings.Contains(out, "Refused") || strings.Contains(out, "refuses") {
				return fmt.Errorf("still refused:\n%s", out)
			}
			if !strings.Contains(out, "escapee") {
				return fmt.Errorf("escapee not listed:\n%s", out)
			}
			return nil
		})
	})

	step.run("removing the forbidden object lets the app land", func(t *testing.T) {
		e.Commit(t, "tenant-a: no cluster role", map[string]string{"manifests/tenant-a/role.yaml": ""})
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, deployments, "tenant-a", "web", "nginx:tenant")
	})
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// TestArgoCDFieldsAreActedOnOrWarned syncs Applications that use
// managedNamespaceMetadata, revisionHistoryLimit,
// SkipDryRunOnMissingResource and a field Flotilla does not act on, into
// a real cluster.
func TestArgoCDFieldsAreActedOnOrWarned(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	startAgent(t, e, prod, map[string]string{"env": "production"}, t.TempDir())
	app := func(name, version string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: %s, namespace: argocd}
spec:
  project: default
  revisionHistoryLimit: 2
  info: [{name: docs, value: "https://wiki.example.com/%s"}]
  source: {repoURL: https://github.com/your-org/gitops-config, targetRevision: HEAD, path: manifests/%s}
  destination: {server: https://kubernetes.default.svc, namespace: %s}
  syncPolicy:
    automated: {prune: true}
    syncOptions: [CreateNamespace=true, SkipDryRunOnMissingResource=true]
    managedNamespaceMetadata:
      labels: {team: payments}
      annotations: {owner: payments@example.com}
`, name, version, name, name)
	}
	cm := func(v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata: {version: \"" + v + "\"}\n"
	}
	e.Commit(t, "meta and skip", map[string]string{
		"apps/meta.yaml":         app("meta", "v1"),
		"manifests/meta/cm.yaml": cm("1"),
		"apps/skip.yaml":         app("skip", "v1"),
		"manifests/skip/cm.yaml": cm("1"),
		"manifests/skip/cr.yaml": "apiVersion: widgets.example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
	})
	e.Webhook(t, webhookSecret)

	step := newSteps(t)
	step.run("managedNamespaceMetadata labels the namespace CreateNamespace makes", func(t *testing.T) {
		testenv.Eventually(t, time.Minute, func() error {
			ns, err := prod.Client.CoreV1().Namespaces().Get(t.Context(), "meta", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if ns.Labels["team"] != "payments" || ns.Annotations["owner"] != "payments@example.com" {
				return fmt.Errorf("namespace metadata: %v %v", ns.Labels, ns.Annotations)
			}
			return nil
		})
	})

	step.run("a field not acted on is a warning in the status and the events", func(t *testing.T) {
		e.WaitStatus(t, "prod-eu", "meta", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED || !strings.Contains(st.GetMessage(), "spec.info is not acted on by Flotilla") {
				return fmt.Errorf("%v: %s", st.GetPhase(), st.GetMessage())
			}
			return nil
		})
		e.waitEventMatching(t, bus.HubEventsCluster, "meta", flotillav1.ReasonFieldsIgnored, "spec.info")
	})

	step.run("SkipDryRunOnMissingResource applies the rest without the missing kind's dry-run", func(t *testing.T) {
		testenv.Eventually(t, time.Minute, func() error {
			_, err := getObject(t, prod, configmaps, "skip", "config")
			return err
		})
		e.WaitStatus(t, "prod-eu", "skip", time.Minute, func(st *flotillav1.AppStatus) error {
			if !strings.Contains(st.GetMessage(), "Widget") {
				return fmt.Errorf("%v: %s", st.GetPhase(), st.GetMessage())
			}
			return nil
		})
	})

	step.run("revisionHistoryLimit keeps that many desired states", func(t *testing.T) {
		for _, v := range []string{"2", "3", "4"} {
			e.Commit(t, "meta "+v, map[string]string{"manifests/meta/cm.yaml": cm(v)})
			e.Webhook(t, webhookSecret)
			testenv.Eventually(t, time.Minute, func() error {
				o, err := getObject(t, prod, configmaps, "meta", "config")
				if err != nil {
					return err
				}
				if got, _, _ := unstructured.NestedString(o.Object, "data", "version"); got != v {
					return fmt.Errorf("version %s", got)
				}
				return nil
			})
		}
		history, err := e.Bus.DesiredHistory(t.Context(), "prod-eu", "meta")
		must(t, err)
		if len(history) != 2 {
			t.Errorf("%d desired states retained, want revisionHistoryLimit's 2", len(history))
		}
		out, code := flotilla(t, "app", "history", "meta", "--hub", e.APIURL, "--token", apiToken)
		if code != 0 || strings.Count(out, "prod-eu") != 2 {
			t.Errorf("app history: exit %d:\n%s", code, out)
		}
	})
}

// TestApplicationNamesArgoCDAccepts syncs Applications whose names are
// DNS-1123 subdomains (dots, and longer than a label value may be) into a
// real cluster: published, applied, reported, shown, pruned.
func TestApplicationNamesArgoCDAccepts(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	startAgent(t, e, prod, map[string]string{"env": "production"}, t.TempDir())
	long := strings.Repeat("payments.", 14) + "api" // 129 characters
	app := func(name, ns string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: %s, namespace: argocd}
spec:
  project: default
  source: {repoURL: https://github.com/your-org/gitops-config, targetRevision: HEAD, path: manifests/%s}
  destination: {server: https://kubernetes.default.svc, namespace: %s}
  syncPolicy: {automated: {prune: true}, syncOptions: [CreateNamespace=true]}
`, name, ns, ns)
	}
	cm := func(name string) string { return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\n" }
	e.Commit(t, "dotted names", map[string]string{
		"apps/dotted.yaml":        app("shop.payments.eu-west-1", "dotted"),
		"manifests/dotted/a.yaml": cm("a"),
		"apps/long.yaml":          app(long, "long"),
		"manifests/long/a.yaml":   cm("a"),
		"manifests/long/b.yaml":   cm("b"),
	})
	e.Webhook(t, webhookSecret)

	for _, tc := range []struct{ app, ns string }{{"shop.payments.eu-west-1", "dotted"}, {long, "long"}} {
		e.WaitStatus(t, "prod-eu", tc.app, time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
				return fmt.Errorf("%v: %s", st.GetPhase(), st.GetMessage())
			}
			return nil
		})
		o, err := getObject(t, prod, configmaps, tc.ns, "a")
		must(t, err)
		if v := o.GetLabels()["flotilla.dev/app"]; len(v) > 63 || v == "" {
			t.Errorf("%s: app label %q", tc.app, v)
		}
		out, code := flotilla(t, "app", "get", tc.app, "--hub", e.APIURL, "--token", apiToken)
		if code != 0 || !strings.Contains(out, tc.app) || !strings.Contains(out, "Synced") {
			t.Errorf("app get %s: exit %d:\n%s", tc.app, code, out)
		}
	}
	e.Commit(t, "prune b", map[string]string{"manifests/long/b.yaml": ""})
	e.Webhook(t, webhookSecret)
	testenv.Eventually(t, time.Minute, func() error {
		if _, err := getObject(t, prod, configmaps, "long", "b"); err == nil {
			return fmt.Errorf("b is still there")
		}
		return nil
	})
	if _, err := getObject(t, prod, configmaps, "long", "a"); err != nil {
		t.Errorf("pruning b touched a: %v", err)
	}
}
