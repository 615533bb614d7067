package rollouts

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// stepNames are the canary's steps as the Rollout writes them, one short
// string each, in order: "setWeight 20", "pause 30s", "pause" (until a
// promote), "analysis error-rate", in the spirit of Argo Rollouts'
// kubectl plugin. Steps the agent does not run (experiment,
// setHeaderRoute, setMirrorRoute, plugin) are named too: with Argo
// Rollouts running the Rollout, it has them.
func stepNames(steps []Step) []string {
	out := make([]string, len(steps))
	for i := range steps {
		out[i] = clip(describeStep(&steps[i]))
	}
	return out
}

// describeStep is one step as stepNames names it; a step that sets none of
// the kinds known here (one of a newer Argo Rollouts) is "unknown".
func describeStep(s *Step) string {
	switch {
	case s.SetWeight != nil:
		return fmt.Sprintf("setWeight %d", *s.SetWeight)
	case s.Pause != nil:
		return words("pause", pauseText(s.Pause.Duration))
	case s.Analysis != nil:
		return words("analysis", templateNames(s.Analysis.Templates))
	case s.SetCanaryScale != nil:
		return words("setCanaryScale", canaryScaleText(s.SetCanaryScale))
	case len(s.Experiment) > 0:
		e := otherStepOf(s.Experiment)
		var names []string
		for _, t := range e.Templates {
			names = append(names, t.Name)
		}
		var duration string
		if e.Duration != "" {
			duration = "for " + e.Duration
		}
		return words("experiment", strings.Join(names, ", "), duration)
	case len(s.SetHeaderRoute) > 0:
		return words("setHeaderRoute", otherStepOf(s.SetHeaderRoute).Name)
	case len(s.SetMirrorRoute) > 0:
		m := otherStepOf(s.SetMirrorRoute)
		var percentage string
		if m.Percentage != nil {
			percentage = fmt.Sprintf("%d%%", *m.Percentage)
		}
		return words("setMirrorRoute", m.Name, percentage)
	case len(s.Plugin) > 0:
		return words("plugin", otherStepOf(s.Plugin).Name)
	}
	return "unknown"
}

// pauseText is a pause's duration as written, seconds marked as such
// ("30s" for 30 or "30"); empty without one: the pause waits for a
// promote.
func pauseText(d *intstr.IntOrString) string {
	switch {
	case d == nil:
		return ""
	case d.Type == intstr.Int:
		return strconv.Itoa(d.IntValue()) + "s"
	}
	if _, err := strconv.Atoi(d.StrVal); err == nil {
		return d.StrVal + "s"
	}
	return d.StrVal
}

// templateNames is an analysis step's templates, comma-separated.
func templateNames(refs []TemplateRef) string {
	names := make([]string, len(refs))
	for i, ref := range refs {
		names[i] = ref.TemplateName
	}
	return strings.Join(names, ", ")
}

// canaryScaleText is what a setCanaryScale step sets the canary's size
// to: "weight 20", "replicas 3" or "matchTrafficWeight".
func canaryScaleText(s *SetCanaryScale) string {
	var parts []string
	if s.Weight != nil {
		parts = append(parts, fmt.Sprintf("weight %d", *s.Weight))
	}
	if s.Replicas != nil {
		parts = append(parts, fmt.Sprintf("replicas %d", *s.Replicas))
	}
	if s.MatchTrafficWeight {
		parts = append(parts, "matchTrafficWeight")
	}
	return strings.Join(parts, ", ")
}

// otherStep is what the steps the agent does not run show of themselves:
// the name of a header or mirror route or a plugin, an experiment's
// templates and duration, a mirror's percentage.
type otherStep struct {
	Name       string `json:"name"`
	Duration   string `json:"duration"`
	Percentage *int32 `json:"percentage"`
	Templates  []struct {
		Name string `json:"name"`
	} `json:"templates"`
}

// otherStepOf reads what it can of a step the agent does not run: a
// field of another type is left empty, the step is still named.
func otherStepOf(raw json.RawMessage) otherStep {
	var s otherStep
	_ = json.Unmarshal(raw, &s)
	return s
}

// words joins the non-empty parts with spaces.
func words(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}
