package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-jsonnet"

	"github.com/flotilla-dev/flotilla/internal/artifact"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

var jsonnetRepo = map[string]string{
	"vendor/k8s/k.libsonnet": `{
  configMap(name, data):: {apiVersion: "v1", kind: "ConfigMap", metadata: {name: name}, data: data},
}`,
	"apps/guestbook/params.libsonnet": `{replicas: 2}`,
	"apps/guestbook/main.jsonnet": `local k = import "k8s/k.libsonnet";
local params = import "params.libsonnet";
function(tier, replicas=params.replicas) [
  k.configMap(std.extVar("app") + "-config", {tier: tier, env: std.extVar("env")}),
  {
    apiVersion: "apps/v1", kind: "Deployment",
    metadata: {name: std.extVar("app")},
    spec: {replicas: replicas, selector: {matchLabels: {app: "gb"}},
      template: {metadata: {labels: {app: "gb"}}, spec: {containers: [{name: "gb", image: "gb:" + importstr "version.txt"}]}}},
  },
]`,
	"apps/guestbook/version.txt": "1.2.3",
	"apps/guestbook/plain.yaml":  "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: gb}\n",
}

var jsonnetSpec = &flotillav1.RenderSpec{Directory: &flotillav1.DirectorySpec{Jsonnet: &flotillav1.JsonnetSpec{
	Tlas:    []*flotillav1.JsonnetVar{{Name: "tier", Value: "web"}, {Name: "replicas", Value: "3", Code: true}},
	ExtVars: []*flotillav1.JsonnetVar{{Name: "app", Value: "$ARGOCD_APP_NAME"}, {Name: "env", Value: "prod"}},
	Libs:    []string{"vendor"},
}}}

// TestJsonnetMatchesTheJsonnetTool renders a directory with jsonnet as
// Argo CD configures it and checks the objects are those the jsonnet tool
// (go-jsonnet's VM with a file importer on the same paths) makes, and that
// the files it records reproduce the render from an artifact.
func TestJsonnetMatchesTheJsonnetTool(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, jsonnetRepo)
	req := Request{Root: root, Path: "apps/guestbook", Spec: jsonnetSpec, ReleaseName: "guestbook", Namespace: "gb"}
	got, err := Render(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}

	vm := jsonnet.MakeVM()
	vm.TLAVar("tier", "web")
	vm.TLACode("replicas", "3")
	vm.ExtVar("app", "guestbook")
	vm.ExtVar("env", "prod")
	vm.Importer(&jsonnet.FileImporter{JPaths: []string{filepath.Join(root, "apps/guestbook"), filepath.Join(root, "vendor")}})
	out, err := vm.EvaluateFile(filepath.Join(root, "apps/guestbook/main.jsonnet"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := jsonnetObjects([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	var wantObjs, gotObjs []map[string]any
	for _, o := range want {
		m, err := jsonCompatible(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		wantObjs = append(wantObjs, m)
	}
	for _, m := range got.Manifests {
		if m.Source == "apps/guestbook/main.jsonnet" {
			gotObjs = append(gotObjs, m.Object.Object)
		}
	}
	if diff := cmp.Diff(wantObjs, gotObjs); diff != "" {
		t.Errorf("jsonnet render differs from the jsonnet tool (-jsonnet +flotilla):\n%s", diff)
	}
	if len(got.Manifests) != 3 {
		t.Errorf("manifests = %d, want the two of main.jsonnet and plain.yaml's", len(got.Manifests))
	}

	// What the hub packs renders the same at the agent.
	data, _, err := artifact.Pack(root, got.Files)
	if err != nil {
		t.Fatal(err)
	}
	unpacked := t.TempDir()
	if err := artifact.Unpack(data, unpacked, artifact.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	req.Root = unpacked
	again, err := Render(context.Background(), req)
	if err != nil {
		t.Fatalf("render from the artifact (files %v): %v", got.Files, err)
	}
	if diff := cmp.Diff(objectsOf(got), objectsOf(again)); diff != "" {
		t.Errorf("render from the artifact differs (-repo +artifact):\n%s", diff)
	}
}

func objectsOf(r *Result) []map[string]any {
	var out []map[string]any
	for _, m := range r.Manifests {
		out = append(out, m.Object.Object)
	}
	return out
}

func TestJsonnetStaysInTheRepository(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.libsonnet"), []byte(`{secret: "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, program, want string }{
		{"absolute import", `import "/etc/hostname"`, "absolute paths are not allowed"},
		{"import up and out", `import "../../../../../../../../etc/hostname"`, "leaves the repository"},
		{"symlink out", `import "link/secret.libsonnet"`, "links outside the repository"},
		{"a device", `importstr "dev"`, "links outside the repository"},
		{"a directory", `importstr "sub"`, "not a regular file"},
		{"runaway recursion", `local f(x) = f(x + 1) + 1; f(0)`, "max stack frames exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, map[string]string{"app/main.jsonnet": tc.program, "app/sub/x": ""})
			if err := os.Symlink(outside, filepath.Join(root, "app", "link")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/zero", filepath.Join(root, "app", "dev")); err != nil {
				t.Fatal(err)
			}
			_, err := Render(context.Background(), Request{Root: root, Path: "app", Spec: &flotillav1.RenderSpec{Directory: &flotillav1.DirectorySpec{}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "app/main.jsonnet") {
				t.Errorf("error = %v, want it to name app/main.jsonnet and say %q", err, tc.want)
			}
		})
	}
}

// FuzzJsonnet renders arbitrary jsonnet programs in a directory source:
// nothing panics, and what renders is objects from inside the repository.
func FuzzJsonnet(f *testing.F) {
	for _, seed := range []string{jsonnetRepo["apps/guestbook/main.jsonnet"], `{apiVersion: "v1", kind: "ConfigMap", metadata: {name: "a"}}`, `[1, 2]`, `import "x.libsonnet"`, `std.extVar("missing")`, `error "no"`} {
		f.Add(seed)
	}
	root := f.TempDir()
	writeFiles(f, root, jsonnetRepo)
	f.Fuzz(func(t *testing.T, program string) {
		if err := os.WriteFile(filepath.Join(root, "apps/guestbook/main.jsonnet"), []byte(program), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := Render(context.Background(), Request{Root: root, Path: "apps/guestbook", Spec: jsonnetSpec, ReleaseName: "gb", Timeout: 5 * time.Second})
		if err != nil {
			return
		}
		for _, file := range res.Files {
			if strings.HasPrefix(file, "..") || filepath.IsAbs(file) {
				t.Fatalf("read %s", file)
			}
		}
	})
}
