package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/agent"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// chartSources are a Helm repository (HTTPS, basic auth) and an OCI
// registry (HTTPS, basic auth) holding the charts the sources test's
// Applications name.
type chartSources struct {
	helm *testenv.HelmRepository
	oci  *testenv.OCIRegistry
}

func startChartSources(t *testing.T) *chartSources {
	t.Helper()
	s := &chartSources{
		helm: testenv.NewHelmRepository(t, "charts-reader", "helm-s3cret"),
		oci:  testenv.NewOCIRegistry(t, "oci-reader", "oci-s3cret"),
	}
	for _, v := range []string{"1.0.0", "1.0.3", "1.1.0"} {
		s.helm.Add(t, testenv.DeploymentChart("web", v, "registry.example.com/web:"+v))
	}
	s.helm.Add(t, testenv.DeploymentChart("postgresql", "12.1.0", "postgres:12.1"))
	s.helm.Add(t, testenv.DeploymentChart("postgresql", "12.2.0", "postgres:12.2"))
	for _, v := range []string{"17.0.0", "17.1.0"} {
		s.oci.Push(t, "charts", testenv.DeploymentChart("cache", v, "redis:"+v).Package(t), "cache", v)
	}
	return s
}

// config is the hub's charts configuration for the sources: credentials
// from files, each server's CA, the registry in Argo CD's enableOCI form.
func (s *chartSources) config(t *testing.T) config.Charts {
	t.Helper()
	return config.Charts{
		// The hub asks the indexes again (conditionally), and reconciles,
		// every second: what changes upstream is seen without a commit.
		RefreshInterval: config.Duration{Duration: time.Second},
		Repositories: []config.ChartRepository{
			{URL: s.helm.URL, Name: "upstream", Username: "charts-reader", PasswordFile: secretFile(t, "helm-s3cret"), CAFile: s.helm.CAFile},
			{URL: s.oci.Host + "/charts", EnableOCI: true, Username: "oci-reader", PasswordFile: secretFile(t, "oci-s3cret"), CAFile: s.oci.CAFile},
		},
	}
}

func secretFile(t *testing.T, secret string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(file, []byte(secret+"\n"), 0o600))
	return file
}

// chartApps are Applications as Argo CD users write them: a chart from a
// Helm repository with a version range, one from an OCI registry named
// without a scheme, a multi-source app (an OCI chart with value files from
// Git through a ref, plus a Git path), and a chart in Git whose
// dependency comes from the Helm repository per Chart.lock.
func chartApps(s *chartSources, webVersion string) map[string]string {
	app := func(name, ns, sources string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
  namespace: argocd
spec:
  project: default
%s
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
`, name, sources, ns)
	}
	store, _ := yaml.Marshal(&chart.Metadata{APIVersion: "v2", Name: "store", Version: "0.1.0",
		Dependencies: []*chart.Dependency{{Name: "postgresql", Version: "12.x", Repository: s.helm.URL}}})
	lock, _ := yaml.Marshal(&chart.Lock{Digest: "sha256:unchecked", Dependencies: []*chart.Dependency{{Name: "postgresql", Version: "12.1.0", Repository: s.helm.URL}}})
	return map[string]string{
		"apps/web.yaml": app("web", "web", fmt.Sprintf(`  source:
    repoURL: %s
    chart: web
    targetRevision: %q
    helm:
      valuesObject: {replicas: 2}`, s.helm.URL, webVersion)),
		"apps/cache.yaml": app("cache", "cache", fmt.Sprintf(`  source:
    repoURL: %s/charts
    chart: cache
    targetRevision: 17.0.0`, s.oci.Host)),
		"apps/shop.yaml": app("shop", "shop", fmt.Sprintf(`  sources:
    - repoURL: oci://%s/charts
      chart: cache
      targetRevision: ">=17.0.0 <18.0.0"
      helm:
        releaseName: shop
        valueFiles: [$values/environments/production/shop-cache-values.yaml]
    - repoURL: %s
      targetRevision: HEAD
      ref: values
    - repoURL: %s
      targetRevision: HEAD
      path: manifests/shop`, s.oci.Host, repoURL, repoURL)),
		"environments/production/shop-cache-values.yaml": "replicas: 3\nimage: redis:shop\n",
		"manifests/shop/config.yaml":                     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop}\ndata: {tier: gold}\n",
		"apps/store.yaml": app("store", "store", `  source:
    repoURL: https://github.com/your-org/gitops-config
    targetRevision: HEAD
    path: charts/store`),
		"charts/store/Chart.yaml":            string(store),
		"charts/store/Chart.lock":            string(lock),
		"charts/store/templates/config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: store}\ndata: {db: {{ .Release.Name }}-postgresql}\n",
	}
}

// TestArgoCDSourcesSyncUnchanged syncs charts from a Helm repository and
// an OCI registry, a multi-source Application and a Git chart with a
// dependency into a real cluster, bumps a chart version through Git, and
// shows a version that vanished from its repository keeps the last good
// state and says so.
func TestArgoCDSourcesSyncUnchanged(t *testing.T) {
	s := startChartSources(t)
	h := flotillatest.StartHub(t, flotillatest.HubOptions{Charts: s.config(t)})
	pub, err := signing.ParsePublicKey(h.PublicKeyPEM)
	must(t, err)
	e := &hubEnv{Hub: h, verify: signing.NewVerifier(pub)}
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	// The cluster is known in Argo CD by its API server's URL.
	startAgentWith(t, e, prod, map[string]string{"env": "production"}, t.TempDir(), func(o *agent.Options) {
		o.ServerURLs = []string{"https://prod-eu.k8s.example.com:6443"}
	})

	apps := chartApps(s, "1.0.*")
	apps["apps/by-url.yaml"] = `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: by-url, namespace: argocd}
spec:
  project: default
  source: {repoURL: https://github.com/your-org/gitops-config, targetRevision: HEAD, path: manifests/shop}
  destination: {server: "https://prod-eu.k8s.example.com:6443", namespace: by-url}
  syncPolicy: {automated: {}, syncOptions: [CreateNamespace=true]}
`
	e.Commit(t, "apps from chart repositories", apps)
	e.Webhook(t, webhookSecret)

	step := newSteps(t)
	step.run("every kind of source lands in the cluster", func(t *testing.T) {
		web := waitImage(t, prod, deployments, "web", "web-web", "web:1.0.3")
		if r, _, _ := unstructured.NestedInt64(web.Object, "spec", "replicas"); r != 2 {
			t.Errorf("web replicas = %d, want valuesObject's 2", r)
		}
		waitImage(t, prod, deployments, "cache", "cache-cache", "redis:17.0.0")
		shop := waitImage(t, prod, deployments, "shop", "shop-cache", "redis:shop")
		if r, _, _ := unstructured.NestedInt64(shop.Object, "spec", "replicas"); r != 3 {
			t.Errorf("shop replicas = %d, want the $values file's 3", r)
		}
		if labels := shop.GetLabels(); labels["chart"] != "cache-17.1.0" {
			t.Errorf("shop runs chart %q, want the range's highest, cache-17.1.0", labels["chart"])
		}
		cm, err := getObject(t, prod, configmaps, "shop", "shop")
		must(t, err)
		if tier, _, _ := unstructured.NestedString(cm.Object, "data", "tier"); tier != "gold" {
			t.Errorf("shop's Git source: tier = %q", tier)
		}
		waitImage(t, prod, deployments, "store", "store-postgresql", "postgres:12.1")
		testenv.Eventually(t, time.Minute, func() error {
			_, err := getObject(t, prod, configmaps, "by-url", "shop")
			return err
		})
		cm, err = getObject(t, prod, configmaps, "store", "store")
		must(t, err)
		if db, _, _ := unstructured.NestedString(cm.Object, "data", "db"); db != "store-postgresql" {
			t.Errorf("store's own template: db = %q", db)
		}

		ds := e.waitDesired(t, "prod-eu", "web", func(ds *flotillav1.DesiredState) error { return nil })
		if src := ds.GetSource(); src.GetChart() != "web" || src.GetChartVersion() != "1.0.3" || !strings.HasPrefix(src.GetChartDigest(), "sha256:") {
			t.Errorf("web's source = %v, want chart web 1.0.3 with its digest", src)
		}
		shopDS := e.waitDesired(t, "prod-eu", "shop", func(ds *flotillav1.DesiredState) error { return nil })
		if n := len(shopDS.GetSources()); n != 3 || shopDS.GetSources()[0].GetSource().GetChartVersion() != "17.1.0" || !shopDS.GetSources()[1].GetValuesOnly() {
			t.Errorf("shop's sources = %v", shopDS.GetSources())
		}
		if shopDS.GetSource().GetCommit() == "" || shopDS.GetSource().GetChart() != "" {
			t.Errorf("shop's revision is its first Git source's commit: %v", shopDS.GetSource())
		}
		if s.helm.Unauthorized.Load() != 0 {
			t.Errorf("%d requests to the Helm repository went without credentials", s.helm.Unauthorized.Load())
		}
	})

	step.run("a chart version bump in Git reaches the cluster", func(t *testing.T) {
		e.Commit(t, "web 1.1.0", chartApps(s, "1.1.0"))
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, deployments, "web", "web-web", "web:1.1.0")
	})

	step.run("a version range sees a version published upstream, without a commit", func(t *testing.T) {
		s.oci.Push(t, "charts", testenv.DeploymentChart("cache", "17.2.0", "redis:shop").Package(t), "cache", "17.2.0")
		testenv.Eventually(t, time.Minute, func() error {
			shop, err := getObject(t, prod, deployments, "shop", "shop-cache")
			if err != nil {
				return err
			}
			if got := shop.GetLabels()["chart"]; got != "cache-17.2.0" {
				return fmt.Errorf("shop runs %s", got)
			}
			return nil
		})
	})

	step.run("a version that vanished keeps the last good state and says so", func(t *testing.T) {
		before := e.waitDesired(t, "prod-eu", "web", func(ds *flotillav1.DesiredState) error {
			if ds.GetSource().GetChartVersion() != "1.1.0" {
				return fmt.Errorf("chart %s", ds.GetSource().GetChartVersion())
			}
			return nil
		})
		shopBefore, _, err := e.desired(t, "prod-eu", "shop")
		must(t, err)
		s.helm.Remove("web", "1.1.0")
		// The refresh sees the index without it, with or without a
		// commit; this unrelated one moves the Git sources' revision.
		e.Commit(t, "unrelated", map[string]string{"README.md": "charts\n"})
		e.Webhook(t, webhookSecret)
		ev := waitEvent(t, e.Bus, bus.HubEventsCluster, "web", flotillav1.ReasonAppInvalid)
		for _, want := range []string{`"web"`, "1.1.0", s.helm.URL} {
			if !strings.Contains(ev.GetMessage(), want) {
				t.Errorf("event %q does not name %s", ev.GetMessage(), want)
			}
		}
		for _, secret := range []string{"helm-s3cret", "oci-s3cret"} {
			if strings.Contains(ev.GetMessage(), secret) {
				t.Errorf("event shows a password: %q", ev.GetMessage())
			}
		}
		after, _, err := e.desired(t, "prod-eu", "web")
		must(t, err)
		if after.GetHistoryId() != before.GetHistoryId() {
			t.Errorf("history moved from %d to %d", before.GetHistoryId(), after.GetHistoryId())
		}
		waitImage(t, prod, deployments, "web", "web-web", "web:1.1.0")
		// The multi-source app was left alone: the commit moved its Git
		// sources' revision, not their content.
		shopAfter, _, err := e.desired(t, "prod-eu", "shop")
		must(t, err)
		if shopAfter.GetHistoryId() != shopBefore.GetHistoryId() {
			t.Errorf("shop republished for an unrelated commit: history %d -> %d", shopBefore.GetHistoryId(), shopAfter.GetHistoryId())
		}
	})
}

// TestApplicationSetGeneratorsOnRealGit expands ApplicationSets with git
// generators (files in a matrix with the clusters generator, directories
// with an exclude) and a templatePatch over the hub's real Git mirror, into
// a real cluster; a directory added in Git adds an application.
func TestApplicationSetGeneratorsOnRealGit(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	startAgent(t, e, prod, map[string]string{"env": "production"}, t.TempDir())

	configMap := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {team: %s}\n", name, name)
	}
	e.Commit(t, "teams", map[string]string{
		"teams/alpha/config.json":      `{"team": "alpha", "sync": true}`,
		"teams/beta/config.json":       `{"team": "beta", "sync": false}`,
		"team-manifests/alpha/cm.yaml": configMap("alpha"),
		"team-manifests/beta/cm.yaml":  configMap("beta"),
		"team-manifests/gamma/cm.yaml": configMap("gamma"),
		"apps/teams.yaml": `apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: teams, namespace: argocd}
spec:
  goTemplate: true
  goTemplateOptions: [missingkey=error]
  generators:
    - matrix:
        generators:
          - git:
              repoURL: https://github.com/your-org/gitops-config
              revision: HEAD
              files: [{path: "teams/*/config.json"}]
          - clusters: {selector: {matchLabels: {env: production}}}
  template:
    metadata: {name: "{{.team}}-{{.name}}"}
    spec:
      project: default
      source: {repoURL: https://github.com/your-org/gitops-config, targetRevision: HEAD, path: "team-manifests/{{.path.basename}}"}
      destination: {name: "{{.name}}", namespace: "team-{{.team}}"}
      syncPolicy: {syncOptions: [CreateNamespace=true]}
  templatePatch: |
    {{- if .sync }}
    spec:
      syncPolicy:
        automated: {prune: true}
    {{- end }}
`,
		"apps/dirs.yaml": `apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: dirs, namespace: argocd}
spec:
  generators:
    - git:
        repoURL: https://github.com/your-org/gitops-config
        revision: HEAD
        directories: [{path: "team-manifests/*"}, {path: team-manifests/beta, exclude: true}]
  template:
    metadata: {name: "dir-{{path.basename}}"}
    spec:
      project: default
      source: {repoURL: https://github.com/your-org/gitops-config, targetRevision: HEAD, path: "{{path}}"}
      destination: {server: https://kubernetes.default.svc, namespace: "dir-{{path.basename}}"}
      syncPolicy:
        automated: {}
        syncOptions: [CreateNamespace=true]
`,
	})
	e.Webhook(t, webhookSecret)

	step := newSteps(t)
	step.run("each team's file and each selected directory is an application", func(t *testing.T) {
		for _, want := range []struct{ ns, name string }{{"team-alpha", "alpha"}, {"dir-alpha", "alpha"}, {"dir-gamma", "gamma"}} {
			testenv.Eventually(t, time.Minute, func() error {
				_, err := getObject(t, prod, configmaps, want.ns, want.name)
				return err
			})
		}
		alpha := e.waitDesired(t, "prod-eu", "alpha-prod-eu", func(ds *flotillav1.DesiredState) error { return nil })
		if !alpha.GetSyncPolicy().GetAutomated().GetPrune() {
			t.Errorf("alpha's templatePatch did not make it automated: %v", alpha.GetSyncPolicy())
		}
		beta := e.waitDesired(t, "prod-eu", "beta-prod-eu", func(ds *flotillav1.DesiredState) error { return nil })
		if beta.GetSyncPolicy().GetAutomated() != nil {
			t.Errorf("beta is automated: %v", beta.GetSyncPolicy())
		}
		if _, err := e.Bus.GetDesired(t.Context(), "prod-eu", "dir-beta"); err == nil {
			t.Error("the excluded directory became an application")
		}
	})

	step.run("a directory added in Git adds an application", func(t *testing.T) {
		e.Commit(t, "delta", map[string]string{"team-manifests/delta/cm.yaml": configMap("delta")})
		e.Webhook(t, webhookSecret)
		testenv.Eventually(t, time.Minute, func() error {
			_, err := getObject(t, prod, configmaps, "dir-delta", "delta")
			return err
		})
	})
}
