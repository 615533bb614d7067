package discovery

import (
	"context"
	"crypto/sha1"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-dev/flotilla/internal/appspec"
)

const repo = "https://github.com/your-org/gitops-config"

// dirTrees serves one directory as every revision of repo: discovery's
// logic is tested here; the hub's e2e test runs it on real Git.
type dirTrees struct{ dir string }

func (d dirTrees) Tree(_ context.Context, repoURL, _ string) (*Tree, error) {
	if repoURL != repo {
		return nil, fmt.Errorf("repository %q is not configured", repoURL)
	}
	return &Tree{RepoURL: repo, Dir: d.dir, Commit: &object.Commit{Hash: plumbing.Hash(sha1.Sum([]byte(d.dir)))}}, nil
}

func fixtureCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../test/testdata/gitops-config")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func write(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func targets(res *Result) []string {
	var out []string
	for _, a := range res.Apps {
		for _, c := range a.Clusters {
			out = append(out, c+"/"+a.Application.Metadata.Name)
		}
	}
	slices.Sort(out)
	return out
}

var clusters = []appspec.Cluster{
	{Name: "prod-eu", Labels: map[string]string{"env": "production", "region": "eu"}},
	{Name: "prod-us", Labels: map[string]string{"env": "production", "region": "us"}},
	{Name: "staging-1", Labels: map[string]string{"env": "staging"}},
}

func TestDiscoverTargetsTheFixture(t *testing.T) {
	dir := fixtureCopy(t)
	res := Discover(context.Background(), []Root{{Name: "prod", RepoURL: repo, Path: "apps", Clusters: labels.SelectorFromSet(labels.Set{"env": "production"})}}, clusters, Sources{Trees: dirTrees{dir}})
	if len(res.Errors) > 0 || len(res.RootErrors) > 0 {
		t.Fatalf("errors: %v %v", res.Errors, res.RootErrors)
	}
	want := []string{
		"prod-eu/api-service", "prod-eu/ml-inference", "prod-eu/root-app", "prod-eu/worker-service",
		"prod-us/api-service", "prod-us/ml-inference", "prod-us/root-app", "prod-us/worker-service",
		"staging-1/api-service", "staging-1/worker-service",
	}
	if diff := cmp.Diff(want, targets(res)); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
}

func TestDiscoverAppOfAppsCycleAndAnnotation(t *testing.T) {
	dir := t.TempDir()
	app := func(name, path, extra string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
%s
spec:
  source: {repoURL: %s, path: %s}
  destination: {server: https://kubernetes.default.svc, namespace: default}
`, name, extra, repo, path)
	}
	write(t, dir, "root/a.yaml", app("team-a", "teams/a", ""))
	// teams/a points back at root: a cycle that must end.
	write(t, dir, "teams/a/back.yaml", app("back-to-root", "root", ""))
	write(t, dir, "teams/a/eu-only.yaml", app("eu-only", "workloads", "  annotations:\n    flotilla.dev/clusters: region=eu"))
	write(t, dir, "workloads/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n")

	res := Discover(context.Background(), []Root{{Name: "all", RepoURL: repo, Path: "root", Clusters: labels.Everything()}}, clusters, Sources{Trees: dirTrees{dir}})
	if len(res.Errors) > 0 || len(res.RootErrors) > 0 {
		t.Fatalf("errors: %v %v", res.Errors, res.RootErrors)
	}
	var names []string
	for _, a := range res.Apps {
		names = append(names, a.Application.Metadata.Name)
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"back-to-root", "eu-only", "team-a"}, names); diff != "" {
		t.Errorf("apps (-want +got):\n%s", diff)
	}
	for _, a := range res.Apps {
		if a.Application.Metadata.Name == "eu-only" && !slices.Equal(a.Clusters, []string{"prod-eu"}) {
			t.Errorf("annotation selector: eu-only targets %v, want [prod-eu]", a.Clusters)
		}
	}
}

func TestDiscoverErrorsStayWithTheirApp(t *testing.T) {
	dir := fixtureCopy(t)
	write(t, dir, "apps/broken.yaml", `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: broken}
spec:
  source: {repoURL: https://github.com/unknown/repo, path: x}
  destination: {server: https://kubernetes.default.svc}
`)
	write(t, dir, "apps/twice.yaml", strings.Replace(readFile(t, dir, "apps/worker-service.yaml"), "charts/worker-service", "charts/api-service", 1))
	res := Discover(context.Background(), []Root{{Name: "prod", RepoURL: repo, Path: "apps", Clusters: labels.SelectorFromSet(labels.Set{"env": "production"})}}, clusters, Sources{Trees: dirTrees{dir}})
	got := map[string]string{}
	for _, e := range res.Errors {
		got[e.App] = e.Err.Error()
	}
	if !strings.Contains(got["broken"], `repository "https://github.com/unknown/repo" is not configured`) {
		t.Errorf("broken: %q", got["broken"])
	}
	if !strings.Contains(got["worker-service"], "defined twice") {
		t.Errorf("duplicate worker-service: %q", got["worker-service"])
	}
	for _, a := range res.Apps {
		if a.Application.Metadata.Name == "worker-service" || a.Application.Metadata.Name == "broken" {
			t.Errorf("%s must not be published while it is in error", a.Application.Metadata.Name)
		}
	}
	if !slices.Contains(targets(res), "prod-eu/api-service") {
		t.Error("other applications must be unaffected")
	}
}

func readFile(t *testing.T, dir, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestAppProjectsAreEnforcedAndNeverApplications(t *testing.T) {
	dir := fixtureCopy(t)
	write(t, dir, "apps/projects.yaml", `apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: payments, namespace: argocd}
spec:
  sourceRepos: [https://github.com/your-org/*]
  destinations:
    - {server: https://kubernetes.default.svc, namespace: payments}
    - {name: "!prod-us", namespace: "*"}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: locked, namespace: argocd}
spec:
  sourceRepos: [https://github.com/elsewhere/*]
  destinations: [{server: "*", namespace: "*"}]
`)
	app := func(name, project, ns, extra string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
%s
spec:
  project: %s
  source: {repoURL: %s, path: manifests/ml-inference}
  destination: {server: https://kubernetes.default.svc, namespace: %s}
`, name, extra, project, repo, ns)
	}
	write(t, dir, "apps/pay.yaml", app("pay", "payments", "payments", "  annotations: {flotilla.dev/clusters: region=eu}"))
	write(t, dir, "apps/pay-eu.yaml", app("pay-eu", "payments", "other", "  annotations: {flotilla.dev/clusters: region=eu}"))
	write(t, dir, "apps/pay-us.yaml", app("pay-us", "payments", "other", "  annotations: {flotilla.dev/clusters: region=us}"))
	write(t, dir, "apps/locked.yaml", app("locked-out", "locked", "x", ""))
	write(t, dir, "apps/nowhere.yaml", app("nowhere", "missing", "x", ""))

	res := Discover(context.Background(), []Root{{Name: "prod", RepoURL: repo, Path: "apps", Clusters: labels.SelectorFromSet(labels.Set{"env": "production"})}}, clusters, Sources{Trees: dirTrees{dir}})
	got := map[string]string{}
	for _, e := range res.Errors {
		got[e.App] = e.Err.Error()
	}
	wantErrors := map[string]string{
		"pay-us":     `Application "pay-us": spec.destination: AppProject "payments": cluster prod-us, namespace "other" is not among the project's destinations`,
		"locked-out": `Application "locked-out": spec.source.repoURL: AppProject "locked": repository "https://github.com/your-org/gitops-config" is not permitted by the project's sourceRepos`,
		"nowhere":    `Application "nowhere": spec.project: AppProject "missing": no AppProject "missing" is defined beside the Applications`,
	}
	for app, want := range wantErrors {
		if !strings.Contains(got[app], want) || !strings.Contains(got[app], "apps/") {
			t.Errorf("%s: error %q, want it to name the file and contain %q", app, got[app], want)
		}
	}
	published := map[string]*App{}
	for _, a := range res.Apps {
		published[a.Application.Metadata.Name] = a
	}
	for _, name := range []string{"pay", "pay-eu", "api-service"} {
		a := published[name]
		if a == nil {
			t.Errorf("%s is not published", name)
			continue
		}
		wantProject := map[string]string{"pay": "payments", "pay-eu": "payments", "api-service": "default"}[name]
		if a.Project == nil || a.Project.Metadata.Name != wantProject {
			t.Errorf("%s belongs to %v, want %s", name, a.Project, wantProject)
		}
	}
	for _, name := range []string{"pay-us", "locked-out", "nowhere"} {
		if published[name] != nil {
			t.Errorf("%s is published despite its project", name)
		}
	}
	if len(res.Projects) != 2 {
		t.Errorf("projects = %v", res.Projects)
	}
	// Agents skip what the hub interprets: an AppProject is never applied.
	if !appspec.IsArgoKind("argoproj.io/v1alpha1", appspec.KindAppProject) {
		t.Error("AppProject is not a kind the hub interprets")
	}
}

func TestDestinationByServerURL(t *testing.T) {
	dir := fixtureCopy(t)
	app := func(name, server string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: %s}
spec:
  source: {repoURL: %s, path: manifests/ml-inference}
  destination: {server: %q, namespace: ml}
`, name, repo, server)
	}
	write(t, dir, "apps/by-url.yaml", app("by-url", "https://EU.k8s.example.com:6443/"))
	write(t, dir, "apps/unknown-url.yaml", app("unknown-url", "https://nowhere.example.com"))
	write(t, dir, "apps/shared-url.yaml", app("shared-url", "https://shared.example.com"))
	known := []appspec.Cluster{
		{Name: "prod-eu", Labels: map[string]string{"env": "production"}, ServerURLs: []string{"https://eu.k8s.example.com:6443", "https://shared.example.com"}},
		{Name: "prod-us", Labels: map[string]string{"env": "production"}, ServerURLs: []string{"https://shared.example.com"}},
	}
	res := Discover(context.Background(), []Root{{Name: "prod", RepoURL: repo, Path: "apps", Clusters: labels.Everything()}}, known, Sources{Trees: dirTrees{dir}})
	got := map[string]string{}
	for _, e := range res.Errors {
		got[e.App] = e.Err.Error()
	}
	if !strings.Contains(got["unknown-url"], `Application "unknown-url": spec.destination.server: "https://nowhere.example.com" is not the server URL of a registered cluster`) {
		t.Errorf("unknown-url: %q", got["unknown-url"])
	}
	if !strings.Contains(got["shared-url"], "registered by several clusters (prod-eu, prod-us)") {
		t.Errorf("shared-url: %q", got["shared-url"])
	}
	for _, a := range res.Apps {
		if a.Application.Metadata.Name == "by-url" && !slices.Equal(a.Clusters, []string{"prod-eu"}) {
			t.Errorf("by-url targets %v, want [prod-eu]", a.Clusters)
		}
	}
	if !slices.Contains(targets(res), "prod-eu/by-url") {
		t.Errorf("by-url is not published: %v", targets(res))
	}
}
