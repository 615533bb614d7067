package e2e

import (
	"cmp"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/render"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// The charts of deployments/charts, installed as docs/install.md does.
const (
	hubChart       = "flotilla-hub"
	agentChart     = "flotilla-agent"
	chartNamespace = "flotilla-system"
)

// chartKubeVersion is the Kubernetes version charts are linted and
// rendered for: the test apiserver's.
var chartKubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

// chartValueSets are the value sets every chart is linted, rendered and
// dry-run with: its defaults and the value files of its ci/ folder.
var chartValueSets = []struct{ chart, values string }{
	{hubChart, ""},
	{hubChart, "ci/ha-cert-manager-values.yaml"},
	{agentChart, ""},
	{agentChart, "ci/least-privilege-values.yaml"},
}

func chartDir(t testing.TB, chart string) string {
	return filepath.Join(testenv.RepoRoot(t), "deployments", "charts", chart)
}

// chartValues reads a value file of chart ("" is no values beyond the
// chart's own).
func chartValues(t testing.TB, chart, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartDir(t, chart), file))
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// renderChart is `helm template RELEASE CHART -n flotilla-system` with
// vals, the release named after the chart; it returns the release, whose
// Hooks hold the `helm test` pods.
func renderChart(t testing.TB, chart string, vals map[string]any) (*release.Release, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir(t, chart))
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = chart, chartNamespace
	install.KubeVersion = chartKubeVersion
	return install.Run(chrt, vals)
}

// renderedObjects renders chart with vals into its objects, hooks
// included, each as YAML.
func renderedObjects(t testing.TB, chart string, vals map[string]any) []string {
	t.Helper()
	rel, err := renderChart(t, chart, vals)
	if err != nil {
		t.Fatalf("helm template %s: %v", chart, err)
	}
	var docs []string
	for _, m := range releaseutil.SplitManifests(rel.Manifest) {
		docs = append(docs, m)
	}
	for _, h := range rel.Hooks {
		docs = append(docs, h.Manifest)
	}
	return docs
}

// renderedObject decodes the rendered object of kind and name into out.
func renderedObject(t testing.TB, docs []string, kind, name string, out any) {
	t.Helper()
	for _, d := range docs {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(d), &meta); err != nil {
			t.Fatalf("rendered manifest is not YAML: %v\n%s", err, d)
		}
		if meta.Kind == kind && meta.Metadata.Name == name {
			if err := yaml.UnmarshalStrict([]byte(d), out); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("the chart renders no %s %s", kind, name)
}

// TestHelmChartsLint is `helm lint --strict` of each chart with each value
// set: no error and no warning. The hub's configuration the chart renders
// is one the hub accepts (its own parser and validation), for every
// replica.
func TestHelmChartsLint(t *testing.T) {
	for _, vs := range chartValueSets {
		t.Run(vs.chart+"/"+cmp.Or(vs.values, "defaults"), func(t *testing.T) {
			vals := chartValues(t, vs.chart, vs.values)
			linter := lint.AllWithKubeVersion(chartDir(t, vs.chart), vals, chartNamespace, chartKubeVersion)
			for _, m := range linter.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
			if vs.chart != hubChart {
				return
			}
			docs := renderedObjects(t, vs.chart, vals)
			var cm corev1.ConfigMap
			renderedObject(t, docs, "ConfigMap", hubChart, &cm)
			replicas, _ := vals["replicas"].(float64)
			if want := max(int(replicas), 1); len(cm.Data) != want {
				t.Fatalf("the ConfigMap holds %d configurations, want one per replica (%d)", len(cm.Data), want)
			}
			for name, data := range cm.Data {
				cfg, err := config.Parse(name, []byte(data))
				if err != nil {
					t.Errorf("the hub refuses the configuration the chart renders: %v\n%s", err, data)
					continue
				}
				if want := strings.TrimSuffix(name, ".yaml"); cfg.Replica.Name != want {
					t.Errorf("%s: replica.name %q, want the pod's name %q", name, cfg.Replica.Name, want)
				}
				if want := max(int(replicas), 1); cfg.NATS.Replicas != want || (want == 3) != (len(cfg.NATS.Cluster.Routes) == 3) {
					t.Errorf("%s: nats.replicas %d with routes %v, for %d replicas", name, cfg.NATS.Replicas, cfg.NATS.Cluster.Routes, want)
				}
			}
		})
	}
}

// certManagerCRD is enough of cert-manager's Certificate CRD for the API
// server to check what the hub chart renders: the fields it sets, the
// rest preserved.
const certManagerCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  names: {kind: Certificate, listKind: CertificateList, plural: certificates, singular: certificate}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [secretName, issuerRef]
              x-kubernetes-preserve-unknown-fields: true
              properties:
                secretName: {type: string}
                commonName: {type: string}
                dnsNames: {type: array, items: {type: string}}
                ipAddresses: {type: array, items: {type: string}}
                duration: {type: string}
                renewBefore: {type: string}
                usages: {type: array, items: {type: string, enum: [digital signature, key encipherment, server auth, client auth]}}
                issuerRef:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    kind: {type: string}
                    group: {type: string}
                privateKey:
                  type: object
                  properties:
                    algorithm: {type: string, enum: [RSA, ECDSA, Ed25519]}
                    size: {type: integer}
                    rotationPolicy: {type: string, enum: [Never, Always]}
`

// TestHelmChartsPassServerSideDryRun has a real API server validate every
// object each chart renders with each value set, `helm test` pods
// included: `kubectl apply --server-side --dry-run=server`.
func TestHelmChartsPassServerSideDryRun(t *testing.T) {
	crds := t.TempDir()
	must(t, os.WriteFile(filepath.Join(crds, "certificates.yaml"), []byte(certManagerCRD), 0o600))
	c := testenv.StartCluster(t, testenv.ClusterOptions{Name: "install", CRDDirectoryPaths: []string{crds}})
	// A dry-run creates nothing: the namespaces must exist (the least
	// privilege value set grants Roles in the applications' namespaces,
	// which the cluster's admin makes first).
	for _, ns := range []string{chartNamespace, "production", "ml"} {
		if _, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, vs := range chartValueSets {
		t.Run(vs.chart+"/"+cmp.Or(vs.values, "defaults"), func(t *testing.T) {
			docs := renderedObjects(t, vs.chart, chartValues(t, vs.chart, vs.values))
			objs, err := render.Decode([]byte(strings.Join(docs, "\n---\n")))
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
			}
			t.Logf("%d objects: %v", len(objs), kinds)
			file := filepath.Join(t.TempDir(), "manifests.yaml")
			must(t, os.WriteFile(file, []byte(strings.Join(docs, "\n---\n")), 0o600))
			out, err := c.Kubectl(t, "apply", "--server-side", "--dry-run=server", "-f", file)
			if err != nil {
				t.Fatalf("server-side dry-run of %s: %v\n%s", vs.chart, err, out)
			}
			if n := strings.Count(out, "(server dry run)"); n != len(objs) {
				t.Errorf("%d of %d objects passed the dry-run:\n%s", n, len(objs), out)
			}
		})
	}
}

// TestHelmChartsRefuseBadValues: values.schema.json (and, for what a
// schema cannot say, the chart's templates) refuse a value the hub or the
// agent would not run with, naming it, before anything is installed.
func TestHelmChartsRefuseBadValues(t *testing.T) {
	tests := []struct {
		name, chart, values string
		// want is in the error, naming the value.
		want string
	}{
		{"two hub replicas", hubChart, "replicas: 2", "replicas"},
		{"a misspelled top-level key", hubChart, "replica: 3", "replica"},
		{"an unknown TLS source", hubChart, "tls: {source: letsencrypt}", "source"},
		{"an unknown role", hubChart, "api: {tokens: [{name: ci, role: deployer, secretKey: ci-token}]}", "role"},
		{"a token without its Secret key", hubChart, "api: {tokens: [{name: ci, role: viewer}]}", "secretKey"},
		{"a misspelled repository field", hubChart, "repositories: [{url: https://git.example.com/a, auth: {passwordFile: /etc/token}}]", "passwordFile"},
		{"an Ingress Service type", hubChart, "nats: {service: {type: Ingress, port: 4222}}", "type"},
		{"more history than the hub keeps", hubChart, "history: 100", "history"},
		{"a duration without a unit", hubChart, "gcInterval: '30'", "gcInterval"},
		{"three replicas without the shared keys", hubChart, "replicas: 3", "shared.secretName"},
		{"cert-manager without an issuer", hubChart, "tls: {source: certManager}", "issuerRef.name"},
		{"a misspelled RBAC switch", agentChart, "rbac: {create: true, fullacess: false}", "fullacess"},
		{"a misspelled top-level key", agentChart, "natsUrl: tls://nats.example.com:4222", "natsUrl"},
		{"a server URL without a scheme", agentChart, "serverURLs: [prod-eu.example.com]", "serverURLs"},
		{"a rule without verbs", agentChart, "rbac: {create: true, fullAccess: false, clusterRules: [{apiGroups: [apps], resources: [deployments]}]}", "verbs"},
	}
	for _, tc := range tests {
		t.Run(tc.chart+"/"+tc.name, func(t *testing.T) {
			var vals map[string]any
			must(t, yaml.Unmarshal([]byte(tc.values), &vals))
			_, err := renderChart(t, tc.chart, vals)
			if err == nil {
				t.Fatalf("%s installs with %s", tc.chart, tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("the error does not name %s: %v", tc.want, err)
			}
			t.Logf("%v", err)
		})
	}
}
