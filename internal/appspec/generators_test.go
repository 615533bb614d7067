package appspec

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// dirRepos serves one directory as every repository and revision: the
// generators' logic is tested here; the hub's tests run them on real Git.
type dirRepos struct{ dir string }

func (d dirRepos) Checkout(_ context.Context, repoURL, _ string) (string, error) {
	if repoURL != "https://github.com/argoproj/argo-cd.git" {
		return "", fmt.Errorf("repository %q is not configured", repoURL)
	}
	return d.dir, nil
}

// exampleRepo is the layout of Argo CD's ApplicationSet examples
// (applicationset/examples/git-generator-*).
func exampleRepo(t testing.TB) dirRepos {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"apps/guestbook/deploy.yaml":                  "kind: ConfigMap",
		"apps/helm-guestbook/Chart.yaml":              "name: x",
		"apps/kustomize-guestbook/a.yaml":             "kind: ConfigMap",
		"apps/excluded/a.yaml":                        "kind: ConfigMap",
		"apps/.hidden/a.yaml":                         "kind: ConfigMap",
		"cluster-config/engineering/dev/config.json":  `{"aws_account":"123456","asset_id":"11223344","cluster":{"owner":"cluster-admin@company.com","name":"engineering-dev","address":"https://1.2.3.4"}}`,
		"cluster-config/engineering/prod/config.json": `{"aws_account":"123456","asset_id":"11223344","cluster":{"owner":"cluster-admin@company.com","name":"engineering-prod","address":"https://2.4.6.8"}}`,
		"cluster-config/engineering/prod/extra.yaml":  "- {cluster: {name: extra-1}}\n- {cluster: {name: extra-2}}\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dirRepos{dir}
}

// expand decodes an ApplicationSet (YAML) and expands it; it returns each
// generated Application as "name path namespace".
func expand(t *testing.T, repos Repos, set string) []string {
	t.Helper()
	s, err := DecodeApplicationSet("apps/set.yaml", mergePatch(t, set, `{}`))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := s.Expand(context.Background(), fuzzClusters, repos)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range apps {
		out = append(out, strings.Join([]string{a.Metadata.Name, a.Spec.Source.Path, a.Spec.Destination.Namespace}, " "))
	}
	slices.Sort(out)
	return out
}

func appSet(goTemplate bool, generators, template string) string {
	return fmt.Sprintf(`
metadata: {name: set, namespace: argocd}
spec:
  goTemplate: %v
  generators: %s
  template:
    metadata: {name: %s}
    spec:
      project: default
      source: {repoURL: "https://github.com/argoproj/argo-cd.git", targetRevision: HEAD, path: %s}
      destination: {server: "https://kubernetes.default.svc", namespace: %s}
`, goTemplate, generators, strings.Split(template, "|")[0], strings.Split(template, "|")[1], strings.Split(template, "|")[2])
}

func TestGitDirectoryGenerator(t *testing.T) {
	repos := exampleRepo(t)
	gen := `[{git: {repoURL: "https://github.com/argoproj/argo-cd.git", revision: HEAD, directories: [{path: "apps/*"}, {path: apps/excluded, exclude: true}]}}]`
	want := []string{"guestbook apps/guestbook apps", "helm-guestbook apps/helm-guestbook apps", "kustomize-guestbook apps/kustomize-guestbook apps"}
	if diff := cmp.Diff(want, expand(t, repos, appSet(false, gen, `"{{path.basename}}"|"{{path}}"|"{{path[0]}}"`))); diff != "" {
		t.Errorf("fasttemplate (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, expand(t, repos, appSet(true, gen, `"{{.path.basename}}"|"{{.path.path}}"|"{{index .path.segments 0}}"`))); diff != "" {
		t.Errorf("go template (-want +got):\n%s", diff)
	}
	prefixed := `[{git: {repoURL: "https://github.com/argoproj/argo-cd.git", pathParamPrefix: app, directories: [{path: "apps/guestbook"}]}}]`
	if diff := cmp.Diff([]string{"guestbook apps/guestbook guestbook"}, expand(t, repos, appSet(false, prefixed, `"{{app.path.basename}}"|"{{app.path}}"|"{{app.path.basenameNormalized}}"`))); diff != "" {
		t.Errorf("pathParamPrefix (-want +got):\n%s", diff)
	}
}

func TestGitFilesGenerator(t *testing.T) {
	repos := exampleRepo(t)
	gen := `[{git: {repoURL: "https://github.com/argoproj/argo-cd.git", revision: HEAD, files: [{path: "cluster-config/**/config.json"}], values: {owner: "{{cluster.owner}}"}}}]`
	want := []string{"engineering-dev-guestbook cluster-config/engineering/dev dev", "engineering-prod-guestbook cluster-config/engineering/prod prod"}
	if diff := cmp.Diff(want, expand(t, repos, appSet(false, gen, `"{{cluster.name}}-guestbook"|"{{path}}"|"{{path.basename}}"`))); diff != "" {
		t.Errorf("fasttemplate (-want +got):\n%s", diff)
	}
	goGen := strings.Replace(gen, "{{cluster.owner}}", "{{.cluster.owner}}", 1)
	if diff := cmp.Diff(want, expand(t, repos, appSet(true, goGen, `"{{.cluster.name}}-guestbook"|"{{.path.path}}"|"{{.path.basename}}"`))); diff != "" {
		t.Errorf("go template (-want +got):\n%s", diff)
	}
	// A file may hold a list of objects; '*' crosses '/' as in git's
	// pathspecs; excluded files are left out.
	listGen := `[{git: {repoURL: "https://github.com/argoproj/argo-cd.git", files: [{path: "cluster-config/*.yaml"}, {path: "cluster-config/*/dev/*", exclude: true}]}}]`
	if diff := cmp.Diff([]string{"extra-1 extra.yaml prod", "extra-2 extra.yaml prod"}, expand(t, repos, appSet(false, listGen, `"{{cluster.name}}"|"{{path.filename}}"|"{{path.basename}}"`))); diff != "" {
		t.Errorf("list file (-want +got):\n%s", diff)
	}
}

func TestMatrixAndMergeGenerators(t *testing.T) {
	repos := exampleRepo(t)
	// git directories × clusters (fuzzClusters: prod-eu, staging-1).
	matrix := `[{matrix: {generators: [
		{git: {repoURL: "https://github.com/argoproj/argo-cd.git", directories: [{path: "apps/*guestbook"}, {path: "apps/helm-*", exclude: true}]}},
		{clusters: {selector: {matchLabels: {env: production}}}}]}}]`
	want := []string{"guestbook-prod-eu apps/guestbook web", "kustomize-guestbook-prod-eu apps/kustomize-guestbook web"}
	if diff := cmp.Diff(want, expand(t, repos, appSet(false, matrix, `"{{path.basename}}-{{name}}"|"{{path}}"|"{{metadata.annotations.team}}"`))); diff != "" {
		t.Errorf("matrix (-want +got):\n%s", diff)
	}
	// The second generator reads the first's parameters.
	chained := `[{matrix: {generators: [
		{list: {elements: [{env: dev}, {env: prod}]}},
		{git: {repoURL: "https://github.com/argoproj/argo-cd.git", files: [{path: "cluster-config/engineering/{{.env}}/config.json"}]}}]}}]`
	want = []string{"engineering-dev cluster-config/engineering/dev dev", "engineering-prod cluster-config/engineering/prod prod"}
	if diff := cmp.Diff(want, expand(t, repos, appSet(true, chained, `"{{.cluster.name}}"|"{{.path.path}}"|"{{.env}}"`))); diff != "" {
		t.Errorf("chained matrix (-want +got):\n%s", diff)
	}
	// Merge: every cluster, the list overriding staging-1's namespace.
	merge := `[{merge: {mergeKeys: [name], generators: [
		{clusters: {values: {ns: default-ns}}},
		{list: {elements: [{name: staging-1, values: {ns: staging-ns}}, {name: unknown, values: {ns: x}}]}}]}}]`
	want = []string{"bare apps default-ns", "prod-eu apps default-ns", "staging-1 apps staging-ns"}
	if diff := cmp.Diff(want, expand(t, repos, appSet(true, merge, `"{{.name}}"|apps|"{{.values.ns}}"`))); diff != "" {
		t.Errorf("merge go template (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, expand(t, repos, appSet(false, merge, `"{{name}}"|apps|"{{values.ns}}"`))); diff != "" {
		t.Errorf("merge fasttemplate (-want +got):\n%s", diff)
	}
	// A selector keeps the sets it matches.
	selected := `[{list: {elements: [{app: a, tier: web}, {app: b, tier: db}]}, selector: {matchLabels: {tier: web}}}]`
	if diff := cmp.Diff([]string{"a apps web"}, expand(t, repos, appSet(false, selected, `"{{app}}"|apps|"{{tier}}"`))); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
}

func TestTemplatePatchAndGeneratorTemplate(t *testing.T) {
	set := appSet(true, `[{list: {elements: [{app: a, autoSync: true}, {app: b, autoSync: false}], template: {metadata: {labels: {from: list}}}}}]`, `"{{.app}}"|apps|"{{.app}}"`) + `
  templatePatch: |
    {{- if .autoSync }}
    spec:
      syncPolicy:
        automated: {prune: true}
    {{- end }}
`
	s, err := DecodeApplicationSet("apps/set.yaml", mergePatch(t, set, `{}`))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := s.Expand(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 {
		t.Fatalf("apps = %v", apps)
	}
	for _, a := range apps {
		automated := a.Spec.SyncPolicy != nil && a.Spec.SyncPolicy.Automated != nil && a.Spec.SyncPolicy.Automated.Prune
		if automated != (a.Metadata.Name == "a") {
			t.Errorf("%s: automated = %v", a.Metadata.Name, automated)
		}
		if a.Metadata.Labels["from"] != "list" || a.Spec.Source.Path != "apps" {
			t.Errorf("%s: the generator's template did not merge over the set's: %+v", a.Metadata.Name, a)
		}
	}
}

func TestGeneratorErrors(t *testing.T) {
	repos := exampleRepo(t)
	tests := []struct{ name, gen, want string }{
		{"unknown repository", `[{git: {repoURL: https://example.com/other, directories: [{path: "*"}]}}]`, `spec.generators[0]: git: repository "https://example.com/other" is not configured`},
		{"matrix conflict", `[{matrix: {generators: [{list: {elements: [{a: "1"}]}}, {list: {elements: [{a: "2"}]}}]}}]`, "found duplicate key a with different value"},
		{"merge duplicates", `[{merge: {mergeKeys: [k], generators: [{list: {elements: [{k: x}, {k: x}]}}, {list: {elements: []}}]}}]`, "not unique by mergeKeys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := DecodeApplicationSet("apps/set.yaml", mergePatch(t, appSet(false, tc.gen, `"{{a}}"|apps|x`), `{}`))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Expand(context.Background(), fuzzClusters, repos)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestTemplatesCannotExhaustTheHub(t *testing.T) {
	for _, tmpl := range []string{
		`{{ repeat 100000000000 "x" }}`,
		`{{ until 100000000000 | len }}`,
		`{{ untilStep 0 100000000000 1 | len }}`,
		`{{ range $i := until 100000 }}{{ repeat 100 "x" }}{{ end }}`,
	} {
		s := &ApplicationSet{Spec: ApplicationSetSpec{GoTemplate: true}}
		if _, err := s.goTemplate(tmpl, nil); err == nil {
			t.Errorf("%s: rendered", tmpl)
		}
	}
}
