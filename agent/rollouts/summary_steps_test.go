package rollouts

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Every step kind Argo Rollouts documents, as a Rollout writes it, and
// the name the status gives it.
func TestStepNamesAsTheRolloutWritesThem(t *testing.T) {
	for _, tc := range []struct{ step, want string }{
		{`{setWeight: 20}`, "setWeight 20"},
		{`{setWeight: 0}`, "setWeight 0"},
		{`{pause: {duration: 30s}}`, "pause 30s"},
		{`{pause: {duration: 1h}}`, "pause 1h"},
		{`{pause: {duration: 30}}`, "pause 30s"},
		{`{pause: {duration: "45"}}`, "pause 45s"},
		{`{pause: {}}`, "pause"},
		{`{analysis: {templates: [{templateName: error-rate}]}}`, "analysis error-rate"},
		{`{analysis: {templates: [{templateName: error-rate}, {templateName: latency, clusterScope: true}], args: [{name: service, value: api}]}}`, "analysis error-rate, latency"},
		{`{setCanaryScale: {weight: 25}}`, "setCanaryScale weight 25"},
		{`{setCanaryScale: {replicas: 3}}`, "setCanaryScale replicas 3"},
		{`{setCanaryScale: {matchTrafficWeight: true}}`, "setCanaryScale matchTrafficWeight"},
		{`{experiment: {duration: 1h, templates: [{name: baseline, specRef: stable}, {name: canary, specRef: canary}], analyses: [{name: mann-whitney, templateName: mann-whitney}]}}`, "experiment baseline, canary for 1h"},
		{`{experiment: {templates: [{name: canary, specRef: canary, weight: 5}]}}`, "experiment canary"},
		{`{setHeaderRoute: {name: header-route-1, match: [{headerName: Custom-Header, headerValue: {exact: Mozilla}}]}}`, "setHeaderRoute header-route-1"},
		{`{setHeaderRoute: {name: header-route-1}}`, "setHeaderRoute header-route-1"},
		{`{setMirrorRoute: {name: mirror-route, percentage: 35, match: [{method: {exact: GET}}]}}`, "setMirrorRoute mirror-route 35%"},
		{`{setMirrorRoute: {name: mirror-route}}`, "setMirrorRoute mirror-route"},
		{`{plugin: {name: argoproj-labs/step-plugin, config: {message: hello}}}`, "plugin argoproj-labs/step-plugin"},
		{`{plugin: {name: 7}}`, "plugin"},
		{`{someNewStep: {}}`, "unknown"},
	} {
		var step Step
		if err := yaml.Unmarshal([]byte(tc.step), &step); err != nil {
			t.Fatalf("%s: %v", tc.step, err)
		}
		if got := stepNames([]Step{step}); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: named %q, want %q", tc.step, got, tc.want)
		}
	}
}

// A Rollout's steps keep their order, and a name is no longer than
// maxText: an analysis step may name many templates.
func TestStepNamesKeepOrderAndAreBounded(t *testing.T) {
	var steps []Step
	many := "{analysis: {templates: [" + strings.Repeat("{templateName: a-rather-long-analysis-template-name}, ", 20) + "]}}"
	if err := yaml.Unmarshal([]byte("[{setWeight: 10}, {pause: {}}, "+many+", {setWeight: 100}]"), &steps); err != nil {
		t.Fatal(err)
	}
	got := stepNames(steps)
	if len(got) != 4 || got[0] != "setWeight 10" || got[1] != "pause" || got[3] != "setWeight 100" {
		t.Fatalf("step names %q", got)
	}
	if len(got[2]) > maxText || !strings.HasPrefix(got[2], "analysis a-rather-long") || !strings.HasSuffix(got[2], "…") {
		t.Errorf("a long step name is %d bytes: %q", len(got[2]), got[2])
	}
}

// Whatever a step holds, its name is short and not empty: the steps come
// from the cluster.
func FuzzStepNames(f *testing.F) {
	for _, seed := range []string{
		`{"setWeight": 20}`, `{"pause": {"duration": "30s"}}`, `{"pause": {"duration": 30}}`,
		`{"analysis": {"templates": [{"templateName": "error-rate"}]}}`, `{"setCanaryScale": {"replicas": 3}}`,
		`{"experiment": {"duration": "1h", "templates": [{"name": "canary"}]}}`, `{"setMirrorRoute": {"name": "m", "percentage": 35}}`,
		`{"plugin": {"name": "argoproj-labs/step-plugin"}}`, `{"setHeaderRoute": null}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var step Step
		if json.Unmarshal([]byte(data), &step) != nil {
			return
		}
		if name := stepNames([]Step{step})[0]; name == "" || len(name) > maxText {
			t.Errorf("%s: named %q", data, name)
		}
	})
}
