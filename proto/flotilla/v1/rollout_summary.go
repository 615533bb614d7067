package flotillav1

import (
	"fmt"
	"strings"
)

// Summary is one line saying where the rollout is, as the fleet view and
// events show it: "canary step 3/6, 50 %, analysis Running" or
// "blueGreen Paused, analysis Successful".
func (r *RolloutStatus) Summary() string {
	if r == nil {
		return ""
	}
	var parts []string
	switch {
	case r.GetStrategy() == "canary" && r.GetStep() == 0:
		parts = append(parts, "canary, not yet seen by its controller")
	case r.GetStrategy() == "canary" && r.GetStep() > r.GetSteps():
		parts = append(parts, "canary done")
	case r.GetStrategy() == "canary":
		parts = append(parts, fmt.Sprintf("canary step %d/%d", r.GetStep(), r.GetSteps()), fmt.Sprintf("%d %%", r.GetCanaryWeight()))
	case r.GetStrategy() != "":
		parts = append(parts, r.GetStrategy())
	}
	if r.GetPhase() != "" && r.GetPhase() != "Progressing" {
		parts = append(parts, r.GetPhase())
	}
	if a := r.GetAnalysis(); a != nil {
		parts = append(parts, "analysis "+a.GetPhase())
	}
	return strings.Join(parts, ", ")
}

// Measurements is the latest measurement of each metric of the rollout's
// analysis: "error-rate=[0.05] Failed (4 failed of 4)".
func (r *RolloutStatus) Measurements() string {
	var out []string
	for _, m := range r.GetAnalysis().GetMeasurements() {
		s := fmt.Sprintf("%s=%s %s (%d failed of %d", m.GetMetric(), m.GetValue(), m.GetPhase(), m.GetFailed(), m.GetCount())
		if m.GetErrors() > 0 {
			s += fmt.Sprintf(", %d errors", m.GetErrors())
		}
		out = append(out, s+")")
	}
	return strings.Join(out, "; ")
}

// RolloutSummary is the Summary of each of the app's Rollouts, joined by
// "; ", empty without any.
func (s *AppStatus) RolloutSummary() string {
	var out []string
	for _, ro := range s.GetRollouts() {
		out = append(out, ro.Summary())
	}
	return strings.Join(out, "; ")
}

// RolloutInProgress reports whether one of the app's Rollouts is on its
// way: neither Healthy nor Degraded (Progressing, Paused).
func (s *AppStatus) RolloutInProgress() bool {
	for _, ro := range s.GetRollouts() {
		if p := ro.GetPhase(); p != "" && p != "Healthy" && p != "Degraded" {
			return true
		}
	}
	return false
}
