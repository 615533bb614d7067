package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/internal/render"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestFixtureChartsRender proves the fixture gitops-config charts are valid
// Helm: they render the way `helm template` would, with each environment's
// value file, into the kinds the user story describes.
func TestFixtureChartsRender(t *testing.T) {
	repo := testenv.Fixture(t, "gitops-config")
	tests := []struct {
		chart, env string
		wantKinds  []string
		wantImage  string
	}{
		{"api-service", "production", []string{"AnalysisTemplate", "HorizontalPodAutoscaler", "Ingress", "Rollout", "Service", "Service", "Service"}, "registry.example.com/your-org/api-service:1.4.2"},
		{"api-service", "staging", []string{"Deployment", "Ingress", "Service"}, "registry.example.com/your-org/api-service:1.5.0-rc.1"},
		{"worker-service", "production", []string{"ConfigMap", "Deployment"}, "registry.example.com/your-org/worker-service:2.3.0"},
		{"worker-service", "staging", []string{"ConfigMap", "Deployment"}, "registry.example.com/your-org/worker-service:2.4.0-rc.2"},
	}
	for _, tc := range tests {
		t.Run(tc.chart+"/"+tc.env, func(t *testing.T) {
			chartDir := filepath.Join(repo, "charts", tc.chart)
			valueFile := filepath.Join(chartDir, "../../environments", tc.env, tc.chart+"-values.yaml")
			manifests := helmTemplate(t, chartDir, tc.chart, tc.env, valueFile)

			var kinds []string
			var images []string
			for _, m := range releaseutil.SplitManifests(manifests) {
				var obj struct {
					Kind string `json:"kind"`
					Spec struct {
						Template struct {
							Spec struct {
								Containers []struct {
									Image string `json:"image"`
								} `json:"containers"`
							} `json:"spec"`
						} `json:"template"`
					} `json:"spec"`
				}
				if err := yaml.Unmarshal([]byte(m), &obj); err != nil {
					t.Fatalf("rendered manifest is not YAML: %v\n%s", err, m)
				}
				kinds = append(kinds, obj.Kind)
				for _, c := range obj.Spec.Template.Spec.Containers {
					images = append(images, c.Image)
				}
			}
			slices.Sort(kinds)
			if diff := cmp.Diff(tc.wantKinds, kinds); diff != "" {
				t.Errorf("kinds (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{tc.wantImage}, images); diff != "" {
				t.Errorf("images (-want +got):\n%s", diff)
			}
		})
	}
}

// helmTemplate is `helm template RELEASE CHART -n NS -f VALUES`.
func helmTemplate(t *testing.T, chartDir, release, namespace string, valueFiles ...string) string {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := (&values.Options{ValueFiles: valueFiles}).MergeValues(getter.Providers{})
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = release, namespace
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rel, err := install.Run(chrt, vals)
	if err != nil {
		t.Fatalf("helm template %s: %v", chartDir, err)
	}
	if strings.TrimSpace(rel.Manifest) == "" {
		t.Fatal("helm template rendered nothing")
	}
	return rel.Manifest
}

// TestRenderMatchesHelmTemplate checks that Flotilla's in-process Helm
// rendering produces what `helm template` (Helm's action.Install in client
// mode) produces for the same chart, values, release and namespace.
func TestRenderMatchesHelmTemplate(t *testing.T) {
	repo := testenv.Fixture(t, "gitops-config")
	for _, chart := range []string{"api-service", "worker-service"} {
		for _, env := range []string{"production", "staging"} {
			t.Run(chart+"/"+env, func(t *testing.T) {
				valueFile := "../../environments/" + env + "/" + chart + "-values.yaml"
				ours, err := render.Render(context.Background(), render.Request{
					Root: repo, Path: "charts/" + chart, ReleaseName: chart, Namespace: env, KubeVersion: "v1.37.2",
					Spec: &flotillav1.RenderSpec{Helm: &flotillav1.HelmSpec{ValueFiles: []string{valueFile}}},
				})
				if err != nil {
					t.Fatal(err)
				}
				theirs, err := render.Decode([]byte(helmTemplate(t, filepath.Join(repo, "charts", chart), chart, env, filepath.Join(repo, "charts", chart, valueFile))))
				if err != nil {
					t.Fatal(err)
				}
				var got []map[string]any
				for _, m := range ours.Manifests {
					got = append(got, m.Object.Object)
				}
				var want []map[string]any
				for _, o := range theirs {
					want = append(want, o.Object)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("render differs from helm template (-helm +flotilla):\n%s", diff)
				}
			})
		}
	}
}
