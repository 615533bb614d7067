package flotillav1

import "testing"

func TestRolloutSummary(t *testing.T) {
	for _, tc := range []struct {
		ro   *RolloutStatus
		want string
	}{
		{&RolloutStatus{Strategy: "canary", Steps: 6}, "canary, not yet seen by its controller"},
		{&RolloutStatus{Strategy: "canary", Step: 3, Steps: 6, CanaryWeight: 50, Phase: "Progressing",
			Analysis: &AnalysisStatus{Phase: "Running"}}, "canary step 3/6, 50 %, analysis Running"},
		{&RolloutStatus{Strategy: "canary", Step: 7, Steps: 6, Phase: "Healthy"}, "canary done, Healthy"},
		{&RolloutStatus{Strategy: "blueGreen", Phase: "Paused"}, "blueGreen, Paused"},
	} {
		if got := tc.ro.Summary(); got != tc.want {
			t.Errorf("Summary() = %q, want %q", got, tc.want)
		}
	}
}
