package render

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// countingServer is an HTTP server that counts every connection opened to
// it, TLS handshakes and git's smart-HTTP requests included.
func countingServer(t *testing.T) (host string, connections *atomic.Int64) {
	t.Helper()
	connections = &atomic.Int64{}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			connections.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), connections
}

func writeFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const configMap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\n"

func TestKustomizeRefusesRemoteReferences(t *testing.T) {
	host, connections := countingServer(t)
	// Were a check to miss a git address, git would clone from the counting
	// server rather than from GitHub.
	t.Setenv("GIT_CONFIG_COUNT", "2")
	t.Setenv("GIT_CONFIG_KEY_0", "url.http://"+host+"/.insteadOf")
	t.Setenv("GIT_CONFIG_VALUE_0", "https://github.com/")
	t.Setenv("GIT_CONFIG_KEY_1", "url.http://"+host+"/.insteadOf")
	t.Setenv("GIT_CONFIG_VALUE_1", "git@github.com:")
	t.Setenv("GIT_TERMINAL_PROMPT", "0")

	tests := []struct {
		name  string
		files map[string]string // under the case's directory; HOST is the counting server
		path  string            // the application, under the case's directory
		file  string            // the kustomization the error names, under the case's directory
		ref   string
	}{
		{
			name:  "https resource",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- cm.yaml\n- https://HOST/deploy.yaml\n", "app/cm.yaml": configMap},
			path:  "app", file: "app/kustomization.yaml", ref: "https://HOST/deploy.yaml",
		},
		{
			name:  "http resource",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- http://HOST/deploy.yaml\n"},
			path:  "app", file: "app/kustomization.yaml", ref: "http://HOST/deploy.yaml",
		},
		{
			name:  "git:: base",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- git::http://HOST/org/repo//base?ref=main\n"},
			path:  "app", file: "app/kustomization.yaml", ref: "git::http://HOST/org/repo//base?ref=main",
		},
		{
			name:  "github.com short form",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- github.com/org/repo//deploy?ref=v1.0.0\n"},
			path:  "app", file: "app/kustomization.yaml", ref: "github.com/org/repo//deploy?ref=v1.0.0",
		},
		{
			name:  "scp-style address in bases",
			files: map[string]string{"app/kustomization.yml": "bases:\n- git@github.com:org/repo.git//base\n"},
			path:  "app", file: "app/kustomization.yml", ref: "git@github.com:org/repo.git//base",
		},
		{
			name:  "field name in another case, as kustomize accepts",
			files: map[string]string{"app/Kustomization": "Resources:\n- https://github.com/org/repo//base\n"},
			path:  "app", file: "app/Kustomization", ref: "https://github.com/org/repo//base",
		},
		{
			name:  "remote component",
			files: map[string]string{"app/kustomization.yaml": "components:\n- https://github.com/org/components//monitoring?ref=v1\n"},
			path:  "app", file: "app/kustomization.yaml", ref: "https://github.com/org/components//monitoring?ref=v1",
		},
		{
			name: "remote base under an overlay",
			files: map[string]string{
				"overlays/prod/kustomization.yaml": "resources:\n- ../../base\n",
				"base/kustomization.yaml":          "resources:\n- cm.yaml\n- https://github.com/org/repo//base?ref=v1\n",
				"base/cm.yaml":                     configMap,
			},
			path: "overlays/prod", file: "base/kustomization.yaml", ref: "https://github.com/org/repo//base?ref=v1",
		},
		{
			name:  "patch file",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- cm.yaml\npatches:\n- path: http://HOST/patch.yaml\n", "app/cm.yaml": configMap},
			path:  "app", file: "app/kustomization.yaml", ref: "http://HOST/patch.yaml",
		},
		{
			name:  "generator file source",
			files: map[string]string{"app/kustomization.yaml": "configMapGenerator:\n- name: settings\n  files:\n  - app.properties=http://HOST/app.properties\n"},
			path:  "app", file: "app/kustomization.yaml", ref: "http://HOST/app.properties",
		},
		{
			name: "transformer configuration file",
			files: map[string]string{
				"app/kustomization.yaml": "resources:\n- cm.yaml\ntransformers:\n- patch.yaml\n",
				"app/cm.yaml":            configMap,
				"app/patch.yaml":         "apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: p\npath: http://HOST/patch.yaml\n",
			},
			path: "app", file: "app/kustomization.yaml", ref: "http://HOST/patch.yaml",
		},
		{
			name: "inline generator configuration",
			files: map[string]string{
				"app/kustomization.yaml": "generators:\n- |\n  apiVersion: builtin\n  kind: ConfigMapGenerator\n  metadata:\n    name: g\n  envs:\n  - https://HOST/env\n",
			},
			path: "app", file: "app/kustomization.yaml", ref: "https://HOST/env",
		},
		{
			name:  "helm chart",
			files: map[string]string{"app/kustomization.yaml": "helmCharts:\n- name: redis\n  repo: http://HOST/charts\n  version: 1.0.0\n"},
			path:  "app", file: "app/kustomization.yaml", ref: "helmCharts \"redis\"",
		},
	}
	root := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("case", string(rune('a'+i)))
			files := map[string]string{}
			for rel, content := range tc.files {
				files[filepath.Join(dir, rel)] = strings.ReplaceAll(content, "HOST", host)
			}
			writeFiles(t, root, files)
			res, err := Render(context.Background(), Request{Root: root, Path: filepath.ToSlash(filepath.Join(dir, tc.path))})
			var rerr *Error
			if !errors.As(err, &rerr) || res != nil {
				t.Fatalf("Render = %v, %v; want an *Error", res, err)
			}
			if want := filepath.ToSlash(filepath.Join(dir, tc.file)); rerr.File != want {
				t.Errorf("error names %q, want %q: %v", rerr.File, want, err)
			}
			if ref := strings.ReplaceAll(tc.ref, "HOST", host); !strings.Contains(err.Error(), ref) {
				t.Errorf("error = %v, want it to name %s", err, ref)
			}
		})
	}
	if n := connections.Load(); n != 0 {
		t.Errorf("the renders opened %d connections; want none", n)
	}
}

// TestCountingServerSeesKustomizeFetch shows that the server above would see
// a fetch: kustomize run directly, without checkLocal, fetches the URL.
func TestCountingServerSeesKustomizeFetch(t *testing.T) {
	host, connections := countingServer(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"kustomization.yaml": "resources:\n- http://" + host + "/deploy.yaml\n"})
	if _, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir); err == nil {
		t.Fatal("kustomize built a resource the server does not have")
	}
	if connections.Load() == 0 {
		t.Fatal("kustomize fetched nothing: the counting server proves nothing")
	}
}

func TestKustomizeAcceptsURLsThatAreOnlyValues(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"app/kustomization.yaml": `resources:
- cm.yaml
commonAnnotations:
  runbook: https://example.com/runbook
configMapGenerator:
- name: settings
  literals:
  - upstream=https://example.com/api
patches:
- patch: |
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: local
      annotations:
        docs: https://example.com/docs
patchesStrategicMerge:
- |
  apiVersion: v1
  kind: ConfigMap
  metadata:
    name: local
    annotations:
      source: git@example.com:org/repo
`,
		"app/cm.yaml": configMap,
	})
	res, err := Render(context.Background(), Request{Root: root, Path: "app"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range res.Manifests {
		if m.Object.GetName() == "local" {
			for _, k := range []string{"runbook", "docs", "source"} {
				got = append(got, m.Object.GetAnnotations()[k])
			}
		}
	}
	want := []string{"https://example.com/runbook", "https://example.com/docs", "git@example.com:org/repo"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
}

// TestEveryKustomizationFieldIsClassified fails when kustomize gains a
// kustomization field: checkLocal must then learn whether it names
// something kustomize loads.
func TestEveryKustomizationFieldIsClassified(t *testing.T) {
	checked := []string{
		"resources", "bases", "components", "crds", "configurations", "openapi",
		"patchesStrategicMerge", "patchesJson6902", "patches", "replacements",
		"configMapGenerator", "secretGenerator", "helmGlobals", "helmCharts",
		"helmChartInflationGenerator", "generators", "transformers", "validators",
	}
	loadNothing := []string{
		"apiVersion", "kind", "metadata", "namePrefix", "nameSuffix", "namespace",
		"commonLabels", "labels", "commonAnnotations", "images", "imageTags",
		"replicas", "vars", "sortOptions", "generatorOptions", "buildMetadata",
	}
	want := slices.Sorted(slices.Values(slices.Concat(checked, loadNothing)))
	got := slices.Sorted(slices.Values(jsonFields(reflect.TypeFor[types.Kustomization]())))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kustomization fields (-classified +kustomize's):\n%s", diff)
	}
}

func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" && strings.Contains(opts, "inline") {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		out = append(out, name)
	}
	return out
}

// TestEveryBuiltinPluginIsClassified fails when kustomize gains a builtin
// plugin: pluginPathKeys must then learn the fields of its configuration
// that name files.
func TestEveryBuiltinPluginIsClassified(t *testing.T) {
	reviewed := []string{
		"AnnotationsTransformer", "ConfigMapGenerator", "HashTransformer",
		"HelmChartInflationGenerator", "IAMPolicyGenerator", "ImageTagTransformer",
		"LabelTransformer", "NamespaceTransformer", "PatchJson6902Transformer",
		"PatchStrategicMergeTransformer", "PatchTransformer", "PrefixSuffixTransformer",
		"PrefixTransformer", "ReplacementTransformer", "ReplicaCountTransformer",
		"SecretGenerator", "SuffixTransformer", "ValueAddTransformer",
	}
	got := slices.Sorted(slices.Values(krusty.GetBuiltinPluginNames()))
	if diff := cmp.Diff(reviewed, got); diff != "" {
		t.Errorf("builtin plugins (-reviewed +kustomize's):\n%s", diff)
	}
}

func TestRemoteRef(t *testing.T) {
	for ref, want := range map[string]bool{
		"https://github.com/org/repo//base?ref=v1": true,
		"HTTP://example.com/x.yaml":                true,
		"git::https://example.com/org/repo":        true,
		"ssh://git@example.com/org/repo":           true,
		"file:///srv/repo":                         true,
		"github.com/org/repo":                      true,
		"GitHub.com:org/repo":                      true,
		"git@gitlab.com:org/repo.git":              true,
		"../base":                                  false,
		"deployment.yaml":                          false,
		"github.company/x.yaml":                    false,
		"overlays/prod":                            false,
		"apiVersion: v1\nkind: ConfigMap":          false,
	} {
		if got := remoteRef.MatchString(ref); got != want {
			t.Errorf("remoteRef(%q) = %v, want %v", ref, got, want)
		}
	}
}

func FuzzCheckLocal(f *testing.F) {
	for _, seed := range []string{
		"resources:\n- ../base\n- https://example.com/x.yaml\n",
		"components:\n- github.com/org/repo//c\n",
		"transformers:\n- |\n  kind: PatchTransformer\n  path: http://x/y\n",
		"configMapGenerator:\n- name: a\n  files:\n  - k=git@h:r\n",
		"helmCharts:\n- name: x\n", "resources: [", "{}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, kustomization string) {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
			t.Fatal(err)
		}
		err := checkLocal(Request{Root: root, Path: "."}, root, filesys.MakeFsOnDisk())
		var rerr *Error
		if err != nil && (!errors.As(err, &rerr) || rerr.File != "kustomization.yaml") {
			t.Fatalf("checkLocal = %v, want nil or an *Error naming kustomization.yaml", err)
		}
	})
}
