package rollouts

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Summarizer summarizes live Rollouts for the application's status; the
// sync loop can depend on a one-method interface of its own instead of a
// dynamic client.
type Summarizer struct {
	// Client reads the Rollouts' AnalysisRuns.
	Client dynamic.Interface
}

// Summarize is where a live Rollout is, for the application's status:
// phase, step, weight and the latest measurements of its current
// analysis run (read from the run; nil measurements if it cannot be read).
func (s Summarizer) Summarize(ctx context.Context, obj *unstructured.Unstructured) *flotillav1.RolloutStatus {
	out := &flotillav1.RolloutStatus{Namespace: obj.GetNamespace(), Name: obj.GetName()}
	ro, _ := parse(obj)
	if ro == nil {
		return out
	}
	st := &ro.Status
	out.Phase, out.Message, out.StableHash, out.CanaryHash = st.Phase, st.Message, st.StableRS, st.CurrentPodHash
	var run *RunStatus
	switch {
	case ro.Spec.Strategy.Canary != nil:
		out.Strategy = "canary"
		out.Steps = int32(len(ro.Spec.Strategy.Canary.Steps))
		if st.CurrentStepIndex != nil {
			out.Step = *st.CurrentStepIndex + 1
		}
		if st.Canary.Weights != nil {
			out.CanaryWeight = st.Canary.Weights.Canary.Weight
		}
		run = st.Canary.CurrentStepAnalysisRunStatus
		if run == nil || run.Status.Completed() && st.Canary.CurrentBackgroundAnalysisRunStatus != nil {
			run = firstNonNil(st.Canary.CurrentBackgroundAnalysisRunStatus, run)
		}
	case ro.Spec.Strategy.BlueGreen != nil:
		out.Strategy = "blueGreen"
		if st.BlueGreen.ActiveSelector == st.CurrentPodHash && st.CurrentPodHash != st.StableRS {
			out.CanaryWeight = 100
		}
		run = firstNonNil(st.BlueGreen.PostPromotionAnalysisRunStatus, st.BlueGreen.PrePromotionAnalysisRunStatus)
	}
	if run == nil {
		return out
	}
	out.Analysis = &flotillav1.AnalysisStatus{Name: run.Name, Phase: string(run.Status), Message: run.Message}
	live, err := s.Client.Resource(runGVR).Namespace(obj.GetNamespace()).Get(ctx, run.Name, metav1.GetOptions{})
	if err != nil {
		return out
	}
	_, status, err := readRun(live)
	if err != nil {
		return out
	}
	out.Analysis.Measurements = measurementsOf(status)
	return out
}

// measurementsOf is the latest measurement of each of a run's metrics,
// with the metric's counters, for a status at the hub.
func measurementsOf(status *analysis.Status) []*flotillav1.MeasurementStatus {
	var out []*flotillav1.MeasurementStatus
	for _, res := range status.MetricResults {
		m := &flotillav1.MeasurementStatus{Metric: res.Name, Phase: string(res.Phase), Count: res.Count, Failed: res.Failed, Errors: res.Error}
		if n := len(res.Measurements); n > 0 {
			last := res.Measurements[n-1]
			m.Value, m.Message = last.Value, last.Message
			if last.FinishedAt != nil {
				m.FinishedAt = timestamppb.New(last.FinishedAt.Time)
			}
		}
		out = append(out, m)
	}
	return out
}

func firstNonNil(runs ...*RunStatus) *RunStatus {
	for _, r := range runs {
		if r != nil {
			return r
		}
	}
	return nil
}

// IsRollout reports whether obj is an Argo Rollouts Rollout.
func IsRollout(obj *unstructured.Unstructured) bool {
	gvk := obj.GroupVersionKind()
	return gvk.Group == GVR.Group && gvk.Kind == "Rollout"
}
