package render

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

const fixture = "../../test/testdata/gitops-config"

func kinds(res *Result) []string {
	var out []string
	for _, m := range res.Manifests {
		out = append(out, m.Object.GetKind()+"/"+m.Object.GetName())
	}
	slices.Sort(out)
	return out
}

func TestRenderHelmWithEnvironmentValueFile(t *testing.T) {
	res, err := Render(context.Background(), Request{
		Root: fixture, Path: "charts/api-service", ReleaseName: "api-service", Namespace: "production",
		Spec: &flotillav1.RenderSpec{Helm: &flotillav1.HelmSpec{
			ValueFiles: []string{"../../environments/production/api-service-values.yaml"},
			Parameters: []*flotillav1.HelmParameter{{Name: "image.tag", Value: "abc,123", ForceString: true}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"AnalysisTemplate/error-rate-check", "HorizontalPodAutoscaler/api-service", "Ingress/api-service", "Rollout/api-service", "Service/api-service", "Service/api-service-canary", "Service/api-service-stable"}
	if diff := cmp.Diff(want, kinds(res)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if !slices.Contains(res.Files, "environments/production/api-service-values.yaml") || !slices.Contains(res.Files, "charts/api-service/templates/rollout.yaml") {
		t.Errorf("files = %v: want the chart and the production value file", res.Files)
	}
	if slices.Contains(res.Files, "environments/staging/api-service-values.yaml") {
		t.Error("staging value file must not be part of a production render")
	}
	for _, m := range res.Manifests {
		if m.Object.GetKind() == "Rollout" {
			image, _, _ := unstructuredString(m.Object.Object, "spec", "template", "spec", "containers")
			if !strings.Contains(image, "api-service:abc,123") {
				t.Errorf("parameter not applied: %s", image)
			}
			if m.Source != "charts/api-service/templates/rollout.yaml" {
				t.Errorf("source = %q", m.Source)
			}
		}
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[f]
	}
	if list, ok := cur.([]any); ok && len(list) > 0 {
		c, _ := list[0].(map[string]any)
		s, _ := c["image"].(string)
		return s, true, nil
	}
	return "", false, nil
}

func TestRenderKustomizeRecordsBases(t *testing.T) {
	res, err := Render(context.Background(), Request{Root: fixture, Path: "manifests/ml-inference/overlays/production"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Deployment/ml-inference", "Service/ml-inference"}, kinds(res)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	want := []string{
		"manifests/ml-inference/base/deployment.yaml",
		"manifests/ml-inference/base/kustomization.yaml",
		"manifests/ml-inference/base/service.yaml",
		"manifests/ml-inference/overlays/production/kustomization.yaml",
	}
	if diff := cmp.Diff(want, res.Files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestRenderDirectoryOfApplications(t *testing.T) {
	res, err := Render(context.Background(), Request{Root: fixture, Path: "apps"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"AppProject/tenants", "Application/api-service", "Application/ml-inference", "Application/root-app", "Application/worker-service", "ApplicationSet/api-service-staging", "ApplicationSet/worker-service-staging"}
	if diff := cmp.Diff(want, kinds(res)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

func TestRenderErrorsNameTheFile(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(fixture)); err != nil {
		t.Fatal(err)
	}
	write := func(rel, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("apps/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n")
	write("charts/worker-service/templates/bad.yaml", "{{ .Values.nope.deeper }}\n")
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"malformed yaml", Request{Path: "apps"}, "render apps/broken.yaml: invalid manifest"},
		{"template error", Request{Path: "charts/worker-service"}, "render charts/worker-service/templates/bad.yaml: helm template"},
		{"missing value file", Request{Path: "charts/api-service", Spec: &flotillav1.RenderSpec{Helm: &flotillav1.HelmSpec{ValueFiles: []string{"../../environments/qa/api-service-values.yaml"}}}}, "render environments/qa/api-service-values.yaml: value file is missing"},
		{"value file outside the repository", Request{Path: "charts/api-service", Spec: &flotillav1.RenderSpec{Helm: &flotillav1.HelmSpec{ValueFiles: []string{"../../../../etc/passwd"}}}}, "leaves the repository"},
		{"path that does not exist", Request{Path: "charts/nope"}, "render charts/nope: path does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Root = root
			res, err := Render(context.Background(), tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if res != nil {
				t.Fatal("a failed render must return no manifests")
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# c\n",
		`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}]}`,
		"- a\n- b\n", "kind: [\n", "---\n---\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data)
		if err != nil {
			return
		}
		for _, o := range objs {
			if o.GetAPIVersion() == "" || o.GetKind() == "" || (o.GetName() == "" && o.GetGenerateName() == "") {
				t.Fatalf("Decode accepted an incomplete object: %v", o.Object)
			}
		}
	})
}
