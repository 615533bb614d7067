package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

var overrideBase = map[string]string{
	"app/deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: "nginx:0.9"}
        - {name: sidecar, image: busybox}
`,
	"app/patch.yaml":                      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {minReadySeconds: 7}\n",
	"components/extra/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [cm.yaml]\n",
	"components/extra/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {a: b}\n",
}

// TestKustomizeOverridesMatchKustomizeBuild renders an Application's
// spec.source.kustomize and checks the objects are those `kustomize build`
// makes of a kustomization that says the same in its own fields, as
// Argo CD's `kustomize edit` calls leave it.
func TestKustomizeOverridesMatchKustomizeBuild(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, overrideBase)
	writeFiles(t, root, map[string]string{"app/kustomization.yaml": `resources: [deploy.yaml]
commonLabels: {team: a}
images: [{name: nginx, newTag: "1.0"}]
`})
	spec := &flotillav1.RenderSpec{Kustomize: &flotillav1.KustomizeSpec{
		NamePrefix: "p-", NameSuffix: "-s", Namespace: "shop",
		Images:                  []string{"nginx=registry.example.com/nginx:2.0", "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000"},
		CommonLabels:            map[string]string{"env": "prod", "team": "b"},
		ForceCommonLabels:       true,
		CommonAnnotations:       map[string]string{"owner": "payments"},
		Replicas:                []*flotillav1.KustomizeReplica{{Name: "web", Count: 3}},
		Components:              []string{"../components/extra", "../components/missing"},
		IgnoreMissingComponents: true,
		Patches: []*flotillav1.KustomizePatch{
			{Path: "patch.yaml"},
			{Patch: `[{"op": "add", "path": "/metadata/annotations/patched", "value": "yes"}]`, Target: &flotillav1.KustomizeSelector{Kind: "Deployment", Name: "web"}},
		},
	}}
	got, err := Render(context.Background(), Request{Root: root, Path: "app", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}

	ref := t.TempDir()
	writeFiles(t, ref, overrideBase)
	writeFiles(t, ref, map[string]string{"app/kustomization.yaml": `resources: [deploy.yaml]
namePrefix: p-
nameSuffix: -s
namespace: shop
commonLabels: {team: b, env: prod}
commonAnnotations: {owner: payments}
images:
  - {name: nginx, newName: registry.example.com/nginx, newTag: "2.0"}
  - {name: busybox, digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
replicas: [{name: web, count: 3}]
components: [../components/extra]
patches:
  - path: patch.yaml
  - target: {kind: Deployment, name: web}
    patch: '[{"op": "add", "path": "/metadata/annotations/patched", "value": "yes"}]'
`})
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(ref, "app"))
	if err != nil {
		t.Fatal(err)
	}
	var want []map[string]any
	for _, r := range resources.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		if m, err = jsonCompatible(m); err != nil {
			t.Fatal(err)
		}
		want = append(want, m)
	}
	var objs []map[string]any
	for _, m := range got.Manifests {
		objs = append(objs, m.Object.Object)
	}
	if diff := cmp.Diff(want, objs); diff != "" {
		t.Errorf("overrides differ from kustomize build (-kustomize +flotilla):\n%s", diff)
	}
	// The artifact holds the kustomization as in Git: the agent applies
	// the same overrides to it.
	for _, f := range []string{"app/kustomization.yaml", "app/patch.yaml", "components/extra/cm.yaml"} {
		if !contains(got.Files, f) {
			t.Errorf("files %v lack %s", got.Files, f)
		}
	}
	data, err := os.ReadFile(filepath.Join(root, "app/kustomization.yaml"))
	if err != nil || strings.Contains(string(data), "p-") {
		t.Errorf("the repository's kustomization was written to: %s %v", data, err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestKustomizeOverrideErrors(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, overrideBase)
	writeFiles(t, root, map[string]string{"app/kustomization.yaml": "resources: [deploy.yaml]\ncommonLabels: {team: a}\n"})
	tests := []struct {
		name string
		spec *flotillav1.KustomizeSpec
		want string
	}{
		{"label already set", &flotillav1.KustomizeSpec{CommonLabels: map[string]string{"team": "b"}}, "team is already set in the kustomization; set forceCommonLabels"},
		{"missing component", &flotillav1.KustomizeSpec{Components: []string{"../nowhere"}}, `components: "../nowhere" does not exist`},
		{"remote component", &flotillav1.KustomizeSpec{Components: []string{"https://github.com/org/repo//components/x"}, IgnoreMissingComponents: true}, ""},
		{"bad image", &flotillav1.KustomizeSpec{Images: []string{"=:1"}}, "is not [<name>=]<image>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(context.Background(), Request{Root: root, Path: "app", Spec: &flotillav1.RenderSpec{Kustomize: tc.spec}})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("a remote component that is missing locally is skipped with ignoreMissingComponents: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseImageOverride(f *testing.F) {
	for _, seed := range []string{"nginx", "nginx:1.2", "nginx=registry.example.com:5000/nginx:1.2@sha256:abc", "a/b/c@sha256:x", "=:", ":", "x=y"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		entry, err := parseImageOverride(arg)
		if err != nil {
			return
		}
		if entry["name"] == "" {
			t.Fatalf("%q: accepted without a name: %v", arg, entry)
		}
	})
}
