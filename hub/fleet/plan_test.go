package fleet

import (
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/hub/discovery"
	"github.com/flotilla-dev/flotilla/hub/publish"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// argoCDExample is the example of Argo CD's Progressive Syncs page
// (docs/operator-manual/applicationset/Progressive-Syncs.md), unchanged
// but for its clusters' URLs, which the registered clusters below have.
const argoCDExample = `
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: guestbook
spec:
  generators:
    - list:
        elements:
          - cluster: engineering-dev
            url: https://1.2.3.4
            env: env-dev
          - cluster: engineering-qa
            url: https://2.4.6.8
            env: env-qa
          - cluster: engineering-prod
            url: https://9.8.7.6/
            env: env-prod
  strategy:
    type: RollingSync
    rollingSync:
      steps:
        - matchExpressions:
            - key: envLabel
              operator: In
              values:
                - env-dev
          #maxUpdate: 100%  # if undefined, all applications matched are updated together (default is 100%)
        - matchExpressions:
            - key: envLabel
              operator: In
              values:
                - env-qa
          maxUpdate: 0 # if 0, no matched applications will be updated
        - matchExpressions:
            - key: envLabel
              operator: In
              values:
                - env-prod
          maxUpdate: 10% # maxUpdate supports both integer and percentage string values (rounds down, but floored at 1 Application for >0%)
  goTemplate: true
  goTemplateOptions: ['missingkey=error']
  template:
    metadata:
      name: '{{.cluster}}-guestbook'
      labels:
        envLabel: '{{.env}}'
    spec:
      project: my-project
      source:
        repoURL: https://github.com/infra-team/cluster-deployments.git
        targetRevision: HEAD
        path: guestbook/{{.cluster}}
      destination:
        server: '{{.url}}'
        namespace: guestbook
`

// TestArgoCDProgressiveSyncsExample: the steps of Argo CD's example as it
// documents them: env-dev first, all at once; env-qa (maxUpdate 0) only
// when an operator syncs it; env-prod, 10 % floored at one at a time.
func TestArgoCDProgressiveSyncsExample(t *testing.T) {
	data, err := yaml.YAMLToJSON([]byte(argoCDExample))
	if err != nil {
		t.Fatal(err)
	}
	set, err := appspec.DecodeApplicationSet("apps/guestbook.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	clusters := []appspec.Cluster{
		{Name: "engineering-dev", ServerURLs: []string{"https://1.2.3.4"}},
		{Name: "engineering-qa", ServerURLs: []string{"https://2.4.6.8"}},
		{Name: "engineering-prod", ServerURLs: []string{"https://9.8.7.6"}},
	}
	generated, err := set.Expand(t.Context(), clusters, nil)
	if err != nil {
		t.Fatal(err)
	}
	var apps []*discovery.App
	for _, a := range generated {
		cluster, _, _ := strings.Cut(a.Metadata.Name, "-guestbook")
		apps = append(apps, &discovery.App{Application: a, Clusters: []string{cluster}})
	}
	plans := Plans(apps, clusters)
	dev, qa, prod := "engineering-dev.engineering-dev-guestbook", "engineering-qa.engineering-qa-guestbook", "engineering-prod.engineering-prod-guestbook"
	plan := plans[dev]
	if plan == nil || plans[qa] != plan || plans[prod] != plan || plan.ID() != "ApplicationSet/guestbook" {
		t.Fatalf("plans %v", plans)
	}
	var waves [][]string
	for _, w := range plan.Waves {
		waves = append(waves, w.Keys)
	}
	if want := [][]string{{dev}, {qa}, {prod}}; !slices.EqualFunc(waves, want, slices.Equal) {
		t.Fatalf("waves %v, want %v", waves, want)
	}
	if !plan.Waves[1].Manual || plan.Waves[0].Manual || plan.Waves[2].Manual {
		t.Errorf("manual waves: %v %v %v, want only env-qa's", plan.Waves[0].Manual, plan.Waves[1].Manual, plan.Waves[2].Manual)
	}

	w := newWorld(t, plan)
	w.content = map[string]string{dev: "v1", qa: "v1", prod: "v1"}
	for k := range w.content {
		w.published[k] = &flotillav1.DesiredState{HistoryId: 1}
	}
	w.wantReleased(w.commit("v2"), dev)
	w.report(dev, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress())
	r, err := w.c.Get("guestbook")
	if err != nil {
		t.Fatal(err)
	}
	if r.GetPhase() != flotillav1.FleetPhase_FLEET_PHASE_PAUSED || r.GetCurrent() != 1 || r.GetWaves()[2].GetMaxUpdate() != 1 {
		t.Fatalf("after env-dev: %s at wave %d; env-prod maxUpdate %d", r.GetPhase(), r.GetCurrent(), r.GetWaves()[2].GetMaxUpdate())
	}
	if _, err := w.c.Promote(t.Context(), "guestbook", nil, "oncall"); err != nil {
		t.Fatal(err)
	}
	w.wantReleased(w.publish(), qa)
	w.report(qa, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY)
	w.wantReleased(w.progress(), prod)
}

// TestApplicationsNoStepSelectsWaitForAnOperator: Argo CD leaves them to
// a manual sync; they form a last wave released by promote.
func TestApplicationsNoStepSelectsWaitForAnOperator(t *testing.T) {
	set := &appspec.ApplicationSet{Metadata: appspec.ObjectMeta{Name: "web"}, Spec: appspec.ApplicationSetSpec{Strategy: &appspec.ApplicationSetStrategy{
		Type: "RollingSync", RollingSync: &appspec.RollingSyncStrategy{Steps: []appspec.RollingSyncStep{
			{MatchExpressions: []appspec.MatchExpression{{Key: "stage", Operator: "In", Values: []string{"staging"}}}},
		}}}}}
	app := func(name, stage, cluster string) *discovery.App {
		return &discovery.App{Application: &appspec.Application{Metadata: appspec.ObjectMeta{Name: name, Labels: map[string]string{"stage": stage}}, GeneratedBy: set},
			Clusters: []string{cluster}}
	}
	plans := Plans([]*discovery.App{app("web-a", "staging", "a"), app("web-b", "other", "b")}, nil)
	p := plans[appkey.Join("a", "web-a")]
	if len(p.Waves) != 2 || !p.Waves[1].Manual || !slices.Equal(p.Waves[1].Keys, []string{appkey.Join("b", "web-b")}) {
		t.Fatalf("waves %+v", p.Waves)
	}
	r := start(p, []publish.Change{{Key: appkey.Join("b", "web-b"), Content: "x"}}, time.Unix(0, 0))
	if r.GetCurrent() != 1 || r.GetPhase() != flotillav1.FleetPhase_FLEET_PHASE_PAUSED {
		t.Errorf("a change of the unselected app alone: %s at wave %d", r.GetPhase(), r.GetCurrent())
	}
}

// TestClusterLabelWaves orders clusters by their label's value,
// numerically.
func TestClusterLabelWaves(t *testing.T) {
	a := &discovery.App{Application: &appspec.Application{Metadata: appspec.ObjectMeta{Name: "web"}, Waves: &appspec.Waves{ClusterLabel: "flotilla.dev/wave"}},
		Clusters: []string{"c10", "c2", "c1", "none"}}
	clusters := []appspec.Cluster{{Name: "c10", Labels: map[string]string{"flotilla.dev/wave": "10"}}, {Name: "c2", Labels: map[string]string{"flotilla.dev/wave": "2"}},
		{Name: "c1", Labels: map[string]string{"flotilla.dev/wave": "2"}}, {Name: "none"}}
	p := Plans([]*discovery.App{a}, clusters)["c1.web"]
	var got [][]string
	for _, w := range p.Waves {
		got = append(got, w.Keys)
	}
	if want := [][]string{{"c1.web", "c2.web"}, {"c10.web"}, {"none.web"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("waves %v, want %v", got, want)
	}
	if !p.Waves[2].Manual {
		t.Error("clusters without the label are not left to an operator")
	}
}
