package appspec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func in(key string, values ...string) MatchExpression {
	return MatchExpression{Key: key, Operator: OperatorIn, Values: values}
}

func notIn(key string, values ...string) MatchExpression {
	return MatchExpression{Key: key, Operator: OperatorNotIn, Values: values}
}

func step(exprs ...MatchExpression) RollingSyncStep {
	return RollingSyncStep{MatchExpressions: exprs}
}

type labeledApp struct {
	name   string
	labels map[string]string
}

// TestStepSelection runs the label-selection cases of Argo CD's
// TestBuildAppDependencyList (applicationset/progressivesync/
// progressive_sync_test.go), case names kept: wantList is each step's
// selected Applications (its expectedList), wantStep the step each
// belongs to (its expectedStepMap, which leaves out those no step
// selects).
func TestStepSelection(t *testing.T) {
	tests := []struct {
		name     string
		steps    []RollingSyncStep
		apps     []labeledApp
		wantList [][]string
		wantStep map[string]int
	}{
		{
			name:     "handles selecting 1 application with 1 'In' selector",
			steps:    []RollingSyncStep{step(in("env", "dev"))},
			apps:     []labeledApp{{"app-dev", map[string]string{"env": "dev"}}},
			wantList: [][]string{{"app-dev"}},
			wantStep: map[string]int{"app-dev": 0},
		},
		{
			name:  "handles 'In' selectors that select no applications",
			steps: []RollingSyncStep{step(in("env", "dev")), step(in("env", "qa")), step(in("env", "prod"))},
			apps: []labeledApp{
				{"app-qa", map[string]string{"env": "qa"}},
				{"app-prod", map[string]string{"env": "prod"}},
			},
			wantList: [][]string{nil, {"app-qa"}, {"app-prod"}},
			wantStep: map[string]int{"app-qa": 1, "app-prod": 2},
		},
		{
			name:  "multiple 'In' selectors in the same matchExpression only select Applications that match all selectors",
			steps: []RollingSyncStep{step(in("region", "us-east-2"), in("env", "qa"))},
			apps: []labeledApp{
				{"app-qa1", map[string]string{"env": "qa"}},
				{"app-qa2", map[string]string{"env": "qa", "region": "us-east-2"}},
			},
			wantList: [][]string{{"app-qa2"}},
			wantStep: map[string]int{"app-qa2": 0},
		},
		{
			name:  "multiple values in the same 'In' matchExpression can match on any value",
			steps: []RollingSyncStep{step(in("env", "qa", "prod"))},
			apps: []labeledApp{
				{"app-dev", map[string]string{"env": "dev"}},
				{"app-qa", map[string]string{"env": "qa"}},
				{"app-prod", map[string]string{"env": "prod", "region": "us-east-2"}},
			},
			wantList: [][]string{{"app-qa", "app-prod"}},
			wantStep: map[string]int{"app-qa": 0, "app-prod": 0},
		},
		{
			name:     "selects 1 application with 1 'NotIn' selector",
			steps:    []RollingSyncStep{step(notIn("env", "qa"))},
			apps:     []labeledApp{{"app-dev", map[string]string{"env": "dev"}}},
			wantList: [][]string{{"app-dev"}},
			wantStep: map[string]int{"app-dev": 0},
		},
		{
			name:  "'NotIn' selectors that select no applications",
			steps: []RollingSyncStep{step(notIn("env", "qa", "prod"))},
			apps: []labeledApp{
				{"app-qa", map[string]string{"env": "qa"}},
				{"app-prod", map[string]string{"env": "prod"}},
			},
			wantList: [][]string{nil},
			wantStep: map[string]int{},
		},
		{
			name:  "multiple 'NotIn' selectors remove Applications with mising labels on any match",
			steps: []RollingSyncStep{step(notIn("region", "us-east-2"), notIn("env", "qa"))},
			apps: []labeledApp{
				{"app-qa1", map[string]string{"env": "qa"}},
				{"app-qa2", map[string]string{"env": "qa", "region": "us-east-2"}},
			},
			wantList: [][]string{nil},
			wantStep: map[string]int{},
		},
		{
			name:  "multiple 'NotIn' selectors filter all matching Applications",
			steps: []RollingSyncStep{step(notIn("region", "us-east-2"), notIn("env", "qa"))},
			apps: []labeledApp{
				{"app-qa1", map[string]string{"env": "qa", "region": "us-east-1"}},
				{"app-qa2", map[string]string{"env": "qa", "region": "us-east-2"}},
				{"app-prod1", map[string]string{"env": "prod", "region": "us-east-1"}},
				{"app-prod2", map[string]string{"env": "prod", "region": "us-east-2"}},
			},
			wantList: [][]string{{"app-prod1"}},
			wantStep: map[string]int{"app-prod1": 0},
		},
		{
			name:  "multiple values in the same 'NotIn' matchExpression exclude a match from any value",
			steps: []RollingSyncStep{step(notIn("env", "qa", "prod"))},
			apps: []labeledApp{
				{"app-dev", map[string]string{"env": "dev"}},
				{"app-qa", map[string]string{"env": "qa"}},
				{"app-prod", map[string]string{"env": "prod", "region": "us-east-2"}},
			},
			wantList: [][]string{{"app-dev"}},
			wantStep: map[string]int{"app-dev": 0},
		},
		{
			name:  "in a mix of 'In' and 'NotIn' selectors, 'NotIn' takes precedence",
			steps: []RollingSyncStep{step(in("env", "qa", "prod"), notIn("region", "us-west-2"))},
			apps: []labeledApp{
				{"app-dev", map[string]string{"env": "dev"}},
				{"app-qa1", map[string]string{"env": "qa", "region": "us-west-2"}},
				{"app-qa2", map[string]string{"env": "qa", "region": "us-east-2"}},
			},
			wantList: [][]string{{"app-qa2"}},
			wantStep: map[string]int{"app-qa2": 0},
		},
		{
			name:  "app selected in multiple steps is captured as validation issue",
			steps: []RollingSyncStep{step(in("env", "dev")), step(in("region", "us-west-2"))},
			apps: []labeledApp{
				{"app-dev", map[string]string{"env": "dev", "region": "us-west-2"}},
				{"app-qa", map[string]string{"region": "us-west-2"}},
			},
			wantList: [][]string{{"app-dev"}, {"app-dev", "app-qa"}},
			wantStep: map[string]int{"app-dev": 0, "app-qa": 1},
		},
		{
			name:     "Invalid Operator in MatchExpression is captured as validationIssue",
			steps:    []RollingSyncStep{step(MatchExpression{Key: "env", Operator: "Invalid", Values: []string{"dev"}}), step(in("env", "dev"))},
			apps:     []labeledApp{{"app-dev", map[string]string{"env": "dev"}}},
			wantList: [][]string{nil, {"app-dev"}},
			wantStep: map[string]int{"app-dev": 1},
		},
		// Not Argo CD's: a step without expressions selects every
		// Application, as the steps of its maxUpdate tests do.
		{
			name:     "a step without expressions selects all",
			steps:    []RollingSyncStep{step(in("env", "dev")), step()},
			apps:     []labeledApp{{"app-dev", map[string]string{"env": "dev"}}, {"app-bare", nil}},
			wantList: [][]string{{"app-dev"}, {"app-dev", "app-bare"}},
			wantStep: map[string]int{"app-dev": 0, "app-bare": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list := make([][]string, len(tc.steps))
			for i, st := range tc.steps {
				for _, app := range tc.apps {
					if st.Selects(app.labels) {
						list[i] = append(list[i], app.name)
					}
				}
			}
			if diff := cmp.Diff(tc.wantList, list); diff != "" {
				t.Errorf("selected per step (-want +got):\n%s", diff)
			}
			got := map[string]int{}
			for _, app := range tc.apps {
				if i := StepOf(tc.steps, app.labels); i >= 0 {
					got[app.name] = i
				}
			}
			if diff := cmp.Diff(tc.wantStep, got); diff != "" {
				t.Errorf("step of each Application (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInvalidOperatorSelectsNothing: unlike Argo CD, an invalid operator
// fails also on a label the Application lacks.
func TestInvalidOperatorSelectsNothing(t *testing.T) {
	st := step(MatchExpression{Key: "tier", Operator: "Exists"})
	if st.Selects(map[string]string{"env": "dev"}) || StepOf([]RollingSyncStep{st}, nil) != -1 {
		t.Error("a step with an invalid operator selected an Application")
	}
}

func TestRollingSync(t *testing.T) {
	steps := []RollingSyncStep{step(in("env", "dev"))}
	tests := []struct {
		name     string
		strategy *ApplicationSetStrategy
		want     []RollingSyncStep
	}{
		{"no strategy", nil, nil},
		{"AllAtOnce", &ApplicationSetStrategy{Type: StrategyAllAtOnce, RollingSync: &RollingSyncStrategy{Steps: steps}}, nil},
		{"empty type", &ApplicationSetStrategy{RollingSync: &RollingSyncStrategy{Steps: steps}}, nil},
		{"RollingSync without rollingSync", &ApplicationSetStrategy{Type: StrategyRollingSync}, nil},
		{"RollingSync without steps", &ApplicationSetStrategy{Type: StrategyRollingSync, RollingSync: &RollingSyncStrategy{}}, nil},
		{"RollingSync", &ApplicationSetStrategy{Type: StrategyRollingSync, RollingSync: &RollingSyncStrategy{Steps: steps}}, steps},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := &ApplicationSet{Spec: ApplicationSetSpec{Strategy: tc.strategy}}
			if diff := cmp.Diff(tc.want, set.RollingSync()); diff != "" {
				t.Errorf("RollingSync() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMaxUpdate(t *testing.T) {
	pct := intstr.FromString
	num := func(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }
	str := func(s string) *intstr.IntOrString { v := pct(s); return &v }
	tests := []struct {
		name    string
		v       *intstr.IntOrString
		total   int
		want    int
		wantErr string
	}{
		// Argo CD's TestUpdateApplicationSetApplicationStatusProgress
		// (applicationset/controllers/progressive_sync_dependencies_test.go),
		// case names kept.
		{name: "does not update a status if maxUpdate has already been reached with RollingSync", v: num(3), total: 4, want: 3},
		{name: "rounds down for maxUpdate set to percentage string", v: str("50%"), total: 3, want: 1},
		{name: "does not update any applications with maxUpdate set to 0", v: num(0), total: 3, want: 0},
		{name: "updates all applications with maxUpdate set to 100%", v: str("100%"), total: 3, want: 3},
		{name: "updates at least 1 application with maxUpdate >0%", v: str("1%"), total: 3, want: 1},
		// Flotilla's.
		{name: "unset is all", v: nil, total: 7, want: 7},
		{name: "0% is none", v: str("0%"), total: 10, want: 0},
		{name: "a quarter of ten", v: str("25%"), total: 10, want: 2},
		{name: "more than all is all", v: num(12), total: 5, want: 5},
		{name: "over 100% is all", v: str("9223372036854775807%"), total: 5, want: 5},
		{name: "no Applications", v: str("50%"), total: 0, want: 0},
		{name: "negative number", v: num(-1), total: 3, wantErr: "-1 is negative"},
		{name: "negative percentage", v: str("-10%"), total: 3, wantErr: `"-10%" is negative`},
		{name: "a number as a string", v: str("5"), total: 3, wantErr: `"5" is neither a number nor a percentage`},
		{name: "not a number", v: str("half%"), total: 3, wantErr: `"half%" is neither`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MaxUpdate(tc.v, tc.total)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("MaxUpdate() = %d, %v, want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("MaxUpdate() = %d, %v, want %d", got, err, tc.want)
			}
		})
	}
}

func TestStrategyValidationNamesTheField(t *testing.T) {
	base := `{"metadata":{"name":"set"},"spec":{"goTemplate":true,"generators":[{"list":{"elements":[{"c":"prod-eu"}]}}],"template":{"metadata":{"name":"{{.c}}"}}}}`
	tests := []struct {
		name, patch, want string
	}{
		{"unknown type", `{"spec":{"strategy":{"type":"Canary"}}}`, `apps/set.yaml: ApplicationSet "set": spec.strategy.type: "Canary": want AllAtOnce or RollingSync`},
		{"type in the wrong case", `{"spec":{"strategy":{"type":"rollingSync"}}}`, `spec.strategy.type: "rollingSync"`},
		{"no steps", `{"spec":{"strategy":{"type":"RollingSync","rollingSync":{"steps":[]}}}}`, `spec.strategy.rollingSync.steps: no steps defined for rollout`},
		{"invalid operator", `{"spec":{"strategy":{"type":"RollingSync","rollingSync":{"steps":[{"matchExpressions":[{"key":"env","operator":"In","values":["dev"]}]},{"matchExpressions":[{"key":"env","operator":"Exists"}]}]}}}}`,
			`spec.strategy.rollingSync.steps[1].matchExpressions[0].operator: "Exists": want In or NotIn`},
		{"percentage without %", `{"spec":{"strategy":{"type":"RollingSync","rollingSync":{"steps":[{"maxUpdate":"10"}]}}}}`, `spec.strategy.rollingSync.steps[0].maxUpdate: "10" is neither a number nor a percentage`},
		{"negative maxUpdate", `{"spec":{"strategy":{"type":"RollingSync","rollingSync":{"steps":[{},{"maxUpdate":-2}]}}}}`, `spec.strategy.rollingSync.steps[1].maxUpdate: -2 is negative`},
		{"fractional maxUpdate", `{"spec":{"strategy":{"type":"RollingSync","rollingSync":{"steps":[{"maxUpdate":1.5}]}}}}`, `spec.strategy.rollingSync.steps.maxUpdate: cannot be number 1.5`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeApplicationSet("apps/set.yaml", mergePatch(t, base, tc.patch))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestStrategyOnlyRollingSyncIsChecked: Argo CD reads the steps of a
// RollingSync strategy only, so Flotilla does not fail the others'.
func TestStrategyOnlyRollingSyncIsChecked(t *testing.T) {
	base := `{"metadata":{"name":"set"},"spec":{"goTemplate":true,"generators":[{"list":{"elements":[{"c":"prod-eu"}]}}],"template":{"metadata":{"name":"{{.c}}"}}}}`
	for _, patch := range []string{
		`{"spec":{"strategy":{"type":"AllAtOnce","rollingSync":{"steps":[{"matchExpressions":[{"key":"env","operator":"Exists"}]}]}}}}`,
		`{"spec":{"strategy":{"type":"RollingSync"}}}`,
	} {
		set, err := DecodeApplicationSet("apps/set.yaml", mergePatch(t, base, patch))
		if err != nil {
			t.Fatalf("%s: %v", patch, err)
		}
		if set.RollingSync() != nil {
			t.Errorf("%s: RollingSync() = %v, want nil (all at once)", patch, set.RollingSync())
		}
	}
}
