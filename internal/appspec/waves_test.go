package appspec

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// wavesPatch is a merge patch setting the waves annotation to value.
func wavesPatch(t *testing.T, value string) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{WavesAnnotation: value}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

const wavesApp = `{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"name":"api"},"spec":{"source":{"repoURL":"https://git.example.com/r","path":"p"},"destination":{"server":"https://kubernetes.default.svc"}}}`

func TestDecodeWaves(t *testing.T) {
	app, err := DecodeApplication("apps/api.yaml", mergePatch(t, wavesApp, wavesPatch(t, `
clusterLabel: flotilla.dev/wave
autoRollback: true
gates:
- bakeTime: 2m
  maxUpdate: 25%
  analysis:
    templates: [{templateName: error-rate}, {templateName: x, clusterScope: true}]
    args: [{name: service, value: web}, {name: token, valueFrom: {secretKeyRef: {name: s, key: k}}}]
  minSuccessful: 100%
  approval: true
- {}
- maxUpdate: 1
`)))
	if err != nil {
		t.Fatal(err)
	}
	quarter, one, all := intstr.FromString("25%"), intstr.FromInt32(1), intstr.FromString("100%")
	want := &Waves{
		ClusterLabel: "flotilla.dev/wave",
		AutoRollback: true,
		Gates: []WaveGate{
			{
				BakeTime:  2 * time.Minute,
				MaxUpdate: &quarter,
				Analysis: &WaveAnalysis{
					Templates: []WaveTemplateRef{{TemplateName: "error-rate"}, {TemplateName: "x", ClusterScope: true}},
					Args: []WaveArg{
						{Name: "service", Value: "web"},
						{Name: "token", ValueFrom: &WaveArgValueFrom{SecretKeyRef: &SecretKeyRef{Name: "s", Key: "k"}}},
					},
				},
				MinSuccessful: &all,
				Approval:      true,
			},
			{},
			{MaxUpdate: &one},
		},
	}
	if diff := cmp.Diff(want, app.Waves); diff != "" {
		t.Errorf("waves (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want.Gates[2], app.Waves.Gate(2)); diff != "" {
		t.Errorf("Gate(2) (-want +got):\n%s", diff)
	}
	for _, i := range []int{3, 64, -1} {
		if diff := cmp.Diff(WaveGate{}, app.Waves.Gate(i)); diff != "" {
			t.Errorf("Gate(%d) past the gates (-want +got):\n%s", i, diff)
		}
	}
}

func TestWavesAbsentOrEmpty(t *testing.T) {
	app, err := DecodeApplication("apps/api.yaml", []byte(wavesApp))
	if err != nil {
		t.Fatal(err)
	}
	if app.Waves != nil {
		t.Errorf("waves without the annotation = %+v, want nil", app.Waves)
	}
	if diff := cmp.Diff(WaveGate{}, app.Waves.Gate(0)); diff != "" {
		t.Errorf("Gate(0) of no waves (-want +got):\n%s", diff)
	}
	app, err = DecodeApplication("apps/api.yaml", mergePatch(t, wavesApp, wavesPatch(t, "")))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&Waves{}, app.Waves); diff != "" {
		t.Errorf("waves of an empty annotation (-want +got):\n%s", diff)
	}
}

func TestWavesValidationNamesTheField(t *testing.T) {
	const field = `metadata.annotations["flotilla.dev/waves"]`
	tests := []struct {
		name, waves, want string
	}{
		{"not YAML", "gates: [", `apps/api.yaml: Application "api": ` + field + `: `},
		{"unknown field", "gates: [{bake: 2m}]", field + `: json: unknown field "bake"`},
		{"duplicate field", "autoRollback: true\nautoRollback: false", field + `: `},
		{"wrong type", "gates: [{approval: yes please}]", field + `: gates.approval: cannot be string (want bool)`},
		{"not an object", "- gates", field + `: cannot be array (want a mapping)`},
		{"wrong type at the top", "clusterLabel: [a]", field + `: clusterLabel: cannot be array (want string)`},
		{"bad cluster label", "clusterLabel: -wave", field + `.clusterLabel: "-wave" is not a label key`},
		{"bad bake time", "gates: [{}, {bakeTime: soon}]", field + `.gates[1].bakeTime: "soon" is not a duration`},
		{"bake time in seconds", "gates: [{bakeTime: 90}]", field + `: gates.bakeTime: cannot be number (want string)`},
		{"negative bake time", "gates: [{bakeTime: -1s}]", field + `.gates[0].bakeTime: "-1s" is negative`},
		{"bake time over a day", "gates: [{bakeTime: 25h}]", field + `.gates[0].bakeTime: "25h" is more than 24h0m0s`},
		{"negative maxUpdate", "gates: [{maxUpdate: -1}]", field + `.gates[0].maxUpdate: -1 is negative`},
		{"malformed minSuccessful", "gates: [{minSuccessful: most, analysis: {templates: [{templateName: t}]}}]", field + `.gates[0].minSuccessful: "most" is neither a number nor a percentage`},
		{"minSuccessful without analysis", "gates: [{minSuccessful: 1}]", field + `.gates[0].minSuccessful: counts the clusters whose analysis succeeds: set analysis`},
		{"analysis without templates", "gates: [{analysis: {args: [{name: a, value: b}]}}]", field + `.gates[0].analysis.templates: at least one template is required`},
		{"template without a name", "gates: [{analysis: {templates: [{templateName: a}, {clusterScope: true}]}}]", field + `.gates[0].analysis.templates[1].templateName: is required`},
		{"arg without a name", "gates: [{analysis: {templates: [{templateName: a}], args: [{value: b}]}}]", field + `.gates[0].analysis.args[0].name: is required`},
		{"arg without a value", "gates: [{analysis: {templates: [{templateName: a}], args: [{name: b}]}}]", field + `.gates[0].analysis.args[0]: set exactly one of value and valueFrom.secretKeyRef`},
		{"arg with both", "gates: [{analysis: {templates: [{templateName: a}], args: [{name: b, value: c, valueFrom: {secretKeyRef: {name: s, key: k}}}]}}]", field + `.gates[0].analysis.args[0]: set exactly one of`},
		{"valueFrom without secretKeyRef", "gates: [{analysis: {templates: [{templateName: a}], args: [{name: b, valueFrom: {}}]}}]", field + `.gates[0].analysis.args[0].valueFrom.secretKeyRef: is required`},
		{"secretKeyRef without a key", "gates: [{analysis: {templates: [{templateName: a}], args: [{name: b, valueFrom: {secretKeyRef: {name: s}}}]}}]", field + `.gates[0].analysis.args[0].valueFrom.secretKeyRef.key: is required`},
		{"too many gates", "gates: [" + strings.Repeat("{},", 65) + "]", field + `.gates: 65 gates, at most 64`},
		{"too large", "clusterLabel: w\n#" + strings.Repeat("x", 64<<10), field + `: is 65553 bytes, more than 65536`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeApplication("apps/api.yaml", mergePatch(t, wavesApp, wavesPatch(t, tc.waves)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestApplicationSetWaves(t *testing.T) {
	const field = `metadata.annotations["flotilla.dev/waves"]`
	base := `{"metadata":{"name":"set"},"spec":{"goTemplate":true,"generators":[{"list":{"elements":[{"c":"prod-eu"}]}}],"template":{"metadata":{"name":"{{.c}}"},"spec":{"source":{"repoURL":"r","path":"p"},"destination":{"name":"{{.c}}"}}}}}`
	rolling := `{"spec":{"strategy":{"type":"RollingSync","rollingSync":{"steps":[{"matchExpressions":[{"key":"env","operator":"In","values":["staging"]}]},{"maxUpdate":"25%"}]}}}}`
	tests := []struct {
		name, strategy, waves, want string
	}{
		{"gates for the steps", rolling, "gates: [{bakeTime: 10m}, {approval: true}]", ""},
		{"fewer gates than steps", rolling, "autoRollback: true\ngates: [{approval: true}]", ""},
		{"cluster label waves", `{}`, "clusterLabel: region\ngates: [{maxUpdate: 1}, {maxUpdate: 50%}]", ""},
		{"RollingSync without steps has cluster label waves", `{"spec":{"strategy":{"type":"RollingSync"}}}`, "clusterLabel: region", ""},
		{"cluster label with RollingSync", rolling, "clusterLabel: region", `ApplicationSet "set": ` + field + `.clusterLabel: the RollingSync steps of spec.strategy are the waves`},
		{"gate maxUpdate with RollingSync", rolling, "gates: [{}, {maxUpdate: 1}]", field + `.gates[1].maxUpdate: set spec.strategy.rollingSync.steps[1].maxUpdate instead`},
		{"more gates than steps", rolling, "gates: [{}, {}, {}]", field + `.gates: 3 gates for 2 RollingSync steps`},
		{"bad gate", `{}`, "gates: [{bakeTime: 1d}]", `ApplicationSet "set": ` + field + `.gates[0].bakeTime: "1d" is not a duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := mergePatch(t, string(mergePatch(t, base, tc.strategy)), wavesPatch(t, tc.waves))
			set, err := DecodeApplicationSet("apps/set.yaml", obj)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if set.Waves == nil {
				t.Fatal("the waves annotation was not read")
			}
		})
	}
}

func TestExpandNamesTheSetAndReadsWaves(t *testing.T) {
	set, err := DecodeApplicationSet("apps/set.yaml", mergePatch(t, `
metadata: {name: set}
spec:
  generators: [{list: {elements: [{c: prod-eu}, {c: staging-1}]}}]
  template:
    metadata:
      name: "{{c}}"
      annotations: {flotilla.dev/waves: "gates: [{approval: true}]"}
    spec: {source: {repoURL: r, path: p}, destination: {name: "{{c}}"}}
`, `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if set.Waves != nil {
		t.Errorf("the set's waves = %+v, want nil (only its template has the annotation)", set.Waves)
	}
	apps, err := set.Expand(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 {
		t.Fatalf("generated %d Applications, want 2", len(apps))
	}
	for _, app := range apps {
		if app.GeneratedBy != set {
			t.Errorf("%s: GeneratedBy = %p, want the set %p", app.Metadata.Name, app.GeneratedBy, set)
		}
		if !app.Waves.Gate(0).Approval {
			t.Errorf("%s: waves = %+v, want the template's approval gate", app.Metadata.Name, app.Waves)
		}
	}

	set.Spec.Template = json.RawMessage(`{"metadata":{"name":"{{c}}","annotations":{"flotilla.dev/waves":"gates: [{bakeTime: forever}]"}},"spec":{"source":{"repoURL":"r","path":"p"},"destination":{"name":"{{c}}"}}}`)
	_, err = set.Expand(context.Background(), nil, nil)
	want := `ApplicationSet "set" generated an invalid Application: Application "prod-eu": metadata.annotations["flotilla.dev/waves"].gates[0].bakeTime: "forever" is not a duration (want e.g. 90s, 2m, 1h)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}
