package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	chartpkg "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/downloader"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/registry"
	helmrepo "helm.sh/helm/v3/pkg/repo"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-dev/flotilla/hub/charts"
	"github.com/flotilla-dev/flotilla/internal/render"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// helmTemplate is `helm template RELEASE CHART -n NS -f FILE... --set
// SET...` with Helm's own action, the reference the hub's render must
// match object for object.
func helmTemplate(t *testing.T, chrt *chartpkg.Chart, release, namespace string, valueFiles, set []string) []map[string]any {
	t.Helper()
	vals, err := (&values.Options{ValueFiles: valueFiles, Values: set}).MergeValues(getter.Providers{})
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace, install.IncludeCRDs = true, true, true, true
	install.ReleaseName, install.Namespace = release, namespace
	install.KubeVersion = &chartutil.KubeVersion{Version: KubeVersion, Major: "1", Minor: "37"}
	rel, err := install.Run(chrt, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	objs, err := render.Decode([]byte(rel.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, o := range objs {
		out = append(out, o.Object)
	}
	return out
}

func objects(ms []render.Manifest) []map[string]any {
	var out []map[string]any
	for _, m := range ms {
		out = append(out, m.Object.Object)
	}
	return out
}

// chartEnv is a Git tree (dirTrees), a Helm repository and an OCI
// registry, and the hub's fetcher for them.
type chartEnv struct {
	dir     string
	helm    *testenv.HelmRepository
	oci     *testenv.OCIRegistry
	fetcher *charts.Fetcher
}

func newChartEnv(t *testing.T) *chartEnv {
	t.Helper()
	e := &chartEnv{dir: t.TempDir(), helm: testenv.NewHelmRepository(t, "reader", "pw"), oci: testenv.NewOCIRegistry(t, "puller", "pw2")}
	opts := charts.DefaultOptions(t.TempDir())
	opts.Repositories = []charts.Repository{
		{URL: e.helm.URL, Username: "reader", Password: "pw", CAFile: e.helm.CAFile},
		{URL: "oci://" + e.oci.Host, Username: "puller", Password: "pw2", CAFile: e.oci.CAFile},
	}
	var err error
	if e.fetcher, err = charts.New(opts); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *chartEnv) discover(t *testing.T) *Result {
	t.Helper()
	return Discover(context.Background(), []Root{{Name: "all", RepoURL: repo, Path: "apps", Clusters: labels.Everything()}}, clusters,
		Sources{Trees: dirTrees{e.dir}, Charts: e.fetcher})
}

func (e *chartEnv) app(t *testing.T, res *Result, name string) *App {
	t.Helper()
	for _, err := range res.Errors {
		t.Errorf("%s: %v", err.App, err.Err)
	}
	for _, a := range res.Apps {
		if a.Application.Metadata.Name == name {
			return a
		}
	}
	t.Fatalf("no application %s", name)
	return nil
}

// application writes apps/<name>.yaml with the given spec lines.
func (e *chartEnv) application(t *testing.T, name, spec string) {
	t.Helper()
	write(t, e.dir, "apps/"+name+".yaml", fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: %s}
spec:
%s
  destination: {server: https://kubernetes.default.svc, namespace: %s}
`, name, spec, name))
}

func TestChartSourcesRenderAsHelmDoes(t *testing.T) {
	e := newChartEnv(t)
	web := testenv.DeploymentChart("web", "2.1.0", "nginx:2.1")
	web.Templates["service.yaml"] = "apiVersion: v1\nkind: Service\nmetadata: {name: {{ .Release.Name }}, namespace: {{ .Release.Namespace }}}\nspec: {ports: [{port: {{ .Values.port | default 80 }}}]}\n"
	archive := e.helm.Add(t, web)
	e.oci.Push(t, "charts", archive, "web", "2.1.0")
	// An upstream chart as repositories publish them: its dependency
	// packed inside it.
	umbrella := testenv.ChartSpec{Name: "umbrella", Version: "3.0.0",
		Dependencies: []*chartpkg.Dependency{{Name: "cache", Version: "1.x", Repository: "https://charts.example.com"}},
		Templates:    map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-umbrella}\n"},
		Subcharts:    []testenv.ChartSpec{testenv.DeploymentChart("cache", "1.4.0", "redis:1.4")}}
	umbrellaArchive := e.helm.Add(t, umbrella)
	e.application(t, "upstream", fmt.Sprintf("  source: {repoURL: %s, chart: umbrella, targetRevision: 3.0.0}", e.helm.URL))
	e.helm.Add(t, testenv.DeploymentChart("postgresql", "12.1.0", "postgres:12.1"))
	e.helm.Add(t, testenv.DeploymentChart("postgresql", "12.4.0", "postgres:12.4"))
	write(t, e.dir, "environments/prod/web.yaml", "replicas: 5\nport: 8443\n")

	e.application(t, "from-repo", fmt.Sprintf(`  source:
    repoURL: %s
    chart: web
    targetRevision: ^2.0.0
    helm:
      parameters: [{name: image, value: "nginx:pinned"}]`, e.helm.URL))
	e.application(t, "multi", fmt.Sprintf(`  sources:
    - repoURL: oci://%s/charts
      chart: web
      targetRevision: 2.1.0
      helm: {valueFiles: [$env/environments/prod/web.yaml]}
    - {repoURL: %s, targetRevision: HEAD, ref: env}`, e.oci.Host, repo))

	// A chart in Git with a dependency, locked as `helm dependency update`
	// locks it (the reference's own run writes Chart.lock).
	store := testenv.ChartSpec{Name: "store", Version: "0.1.0",
		Dependencies: []*chartpkg.Dependency{{Name: "postgresql", Version: "12.x", Repository: e.helm.URL}},
		Templates:    map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: store}\ndata: {db: {{ .Release.Name }}-postgresql}\n"}}
	reference := t.TempDir()
	store.SaveDir(t, reference)
	helmDependencyUpdate(t, e, filepath.Join(reference, "store"))
	store.SaveDir(t, filepath.Join(e.dir, "charts"))
	lock, err := os.ReadFile(filepath.Join(reference, "store", "Chart.lock"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, e.dir, "charts/store/Chart.lock", string(lock))
	e.application(t, "store", fmt.Sprintf("  source: {repoURL: %s, path: charts/store, targetRevision: HEAD}", repo))

	res := e.discover(t)
	chrt, err := loader.LoadArchive(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		app  string
		want []map[string]any
	}{
		{"from-repo", helmTemplate(t, chrt, "from-repo", "from-repo", nil, []string{"image=nginx:pinned"})},
		{"multi", helmTemplate(t, chrt, "multi", "multi", []string{filepath.Join(e.dir, "environments/prod/web.yaml")}, nil)},
		{"store", helmTemplate(t, loadChart(t, filepath.Join(reference, "store")), "store", "store", nil, nil)},
		{"upstream", helmTemplate(t, loadArchive(t, umbrellaArchive), "upstream", "upstream", nil, nil)},
	}
	for _, tc := range tests {
		a := e.app(t, res, tc.app)
		var got []map[string]any
		for _, src := range a.Sources {
			if src.Rendered != nil {
				got = append(got, objects(src.Rendered.Manifests)...)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s differs from helm template (-helm +flotilla):\n%s", tc.app, diff)
		}
	}
	if a := e.app(t, res, "store"); a.Sources[0].Chart != nil || a.Sources[0].Commit == nil {
		t.Errorf("store is a Git source: %+v", a.Sources[0])
	}
	multi := e.app(t, res, "multi")
	if got := multi.Sources[1].RefFiles; !cmp.Equal(got, []string{"environments/prod/web.yaml"}) {
		t.Errorf("the ref source lends %v, want the value file it read", got)
	}
	if multi.Commit == nil || multi.Commit != multi.Sources[1].Commit {
		t.Errorf("multi's revision is its first Git source's commit")
	}
}

func TestAChartThatFailsFailsItsAppOnly(t *testing.T) {
	e := newChartEnv(t)
	e.helm.Add(t, testenv.DeploymentChart("web", "1.0.0", "nginx:1"))
	e.application(t, "good", fmt.Sprintf("  source: {repoURL: %s, chart: web, targetRevision: 1.0.0}", e.helm.URL))
	e.application(t, "vanished", fmt.Sprintf("  source: {repoURL: %s, chart: web, targetRevision: 0.9.0}", e.helm.URL))
	testenv.ChartSpec{Name: "umbrella", Version: "1.0.0", Dependencies: []*chartpkg.Dependency{
		{Name: "redis", Version: "17.x", Repository: "https://127.0.0.1:1/unreachable"},
	}}.SaveDir(t, filepath.Join(e.dir, "charts"))
	e.application(t, "umbrella", fmt.Sprintf("  source: {repoURL: %s, path: charts/umbrella, targetRevision: HEAD}", repo))

	res := e.discover(t)
	got := map[string]string{}
	for _, err := range res.Errors {
		got[err.App] = err.Err.Error()
	}
	want := map[string][]string{
		"vanished": {"apps/vanished.yaml", `Application "vanished"`, "spec.source", `no version of chart "web" matching "0.9.0"`, "1.0.0"},
		"umbrella": {"apps/umbrella.yaml", `dependency "redis"`, "https://127.0.0.1:1/unreachable"},
	}
	for app, parts := range want {
		for _, p := range parts {
			if !strings.Contains(got[app], p) {
				t.Errorf("%s: error %q does not name %q", app, got[app], p)
			}
		}
	}
	if len(res.Apps) != 1 || res.Apps[0].Application.Metadata.Name != "good" {
		t.Errorf("apps = %v, want good alone", res.Apps)
	}
}

// helmDependencyUpdate is `helm dependency update` against the test's
// Helm repository, with its credentials and CA.
func helmDependencyUpdate(t *testing.T, e *chartEnv, chartDir string) {
	t.Helper()
	home := t.TempDir()
	repoFile := helmrepo.NewFile()
	repoFile.Add(&helmrepo.Entry{Name: "upstream", URL: e.helm.URL, Username: e.helm.Username, Password: e.helm.Password, CAFile: e.helm.CAFile})
	repoConfig := filepath.Join(home, "repositories.yaml")
	if err := repoFile.WriteFile(repoConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(e.oci.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	regClient, err := registry.NewClient(registry.ClientOptHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}),
		registry.ClientOptCredentialsFile(filepath.Join(home, "registry.json")))
	if err != nil {
		t.Fatal(err)
	}
	settings := cli.New()
	settings.RepositoryConfig, settings.RepositoryCache = repoConfig, filepath.Join(home, "cache")
	m := &downloader.Manager{Out: io.Discard, ChartPath: chartDir, Getters: getter.All(settings), RegistryClient: regClient,
		RepositoryConfig: repoConfig, RepositoryCache: settings.RepositoryCache}
	if err := m.Update(); err != nil {
		t.Fatalf("helm dependency update: %v", err)
	}
}

func loadArchive(t *testing.T, data []byte) *chartpkg.Chart {
	t.Helper()
	c, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func loadChart(t *testing.T, dir string) *chartpkg.Chart {
	t.Helper()
	c, err := loader.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
