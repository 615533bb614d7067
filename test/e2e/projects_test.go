package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
