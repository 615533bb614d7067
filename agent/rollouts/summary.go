package rollouts

import (
	"context"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Bounds on what one Rollout adds to its application's status. Nothing
// else bounds a status, and the whole of it (every Rollout and resource
// of the application) goes to the status bucket as one NATS message,
// which max_payload limits (1 MiB by default).
const (
	// maxHistory is how many measurements of a metric are reported, the
	// newest: Argo Rollouts keeps 10 by default (so does the agent's
	// controller), but a run's measurementRetention may keep many more.
	maxHistory = 30
	// maxReplicaSets is how many ReplicaSets are reported: the stable and
	// canary (or active and preview) ones, and old ones still scaling
	// down, of which quick revisions can leave many.
	maxReplicaSets = 10
	// maxImages is how many images of a ReplicaSet are reported.
	maxImages = 10
	// maxText bounds every string taken from the cluster that has no
	// bound of its own: a step's name, a condition, a measured value (a
	// web metric's may be a whole JSON document), an image.
	maxText = 256
)

// Summarizer summarizes live Rollouts for the application's status; the
// sync loop can depend on a one-method interface of its own instead of a
// dynamic client.
type Summarizer struct {
	// Client reads the Rollouts' ReplicaSets and AnalysisRuns.
	Client dynamic.Interface
}

// Summarize is where a live Rollout is, for the application's status:
// phase, step, weight, its steps and ReplicaSets, and the measurements of
// its current analysis run. What cannot be read is left out: no
// ReplicaSets when they cannot be listed, no measurements when the run
// cannot be read.
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
		out.StepNames = stepNames(ro.Spec.Strategy.Canary.Steps)
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
	out.ReplicaSets = s.replicaSets(ctx, obj, ro)
	out.Analysis = s.analysisStatus(ctx, obj.GetNamespace(), run)
	return out
}

// analysisStatus is run's phase and, read from the run itself, its metrics'
// measurements (none when it cannot be read); nil without a run.
func (s Summarizer) analysisStatus(ctx context.Context, namespace string, run *RunStatus) *flotillav1.AnalysisStatus {
	if run == nil {
		return nil
	}
	out := &flotillav1.AnalysisStatus{Name: run.Name, Phase: string(run.Status), Message: run.Message}
	live, err := s.Client.Resource(runGVR).Namespace(namespace).Get(ctx, run.Name, metav1.GetOptions{})
	if err != nil {
		return out
	}
	spec, status, err := readRun(live)
	if err != nil {
		return out
	}
	out.Measurements = measurementsOf(spec, status)
	return out
}

// measurementsOf is, for each of a run's metrics, its latest measurement
// and counters, its conditions as spec writes them, and its history, for
// a status at the hub.
func measurementsOf(spec *analysis.Spec, status *analysis.Status) []*flotillav1.MeasurementStatus {
	metrics := make(map[string]*analysis.Metric, len(spec.Metrics))
	for i := range spec.Metrics {
		metrics[spec.Metrics[i].Name] = &spec.Metrics[i]
	}
	var out []*flotillav1.MeasurementStatus
	for _, res := range status.MetricResults {
		m := &flotillav1.MeasurementStatus{Metric: res.Name, Phase: string(res.Phase), Count: res.Count, Failed: res.Failed, Errors: res.Error,
			History: historyOf(res.Measurements)}
		if metric := metrics[res.Name]; metric != nil {
			m.SuccessCondition, m.FailureCondition = clip(metric.SuccessCondition), clip(metric.FailureCondition)
		}
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

// historyOf is a metric's finished measurements, oldest first as the run
// keeps them, at most the newest maxHistory. One still in flight (a Job
// that has not ended) has no value or time to plot yet, and is left out.
func historyOf(measurements []analysis.Measurement) []*flotillav1.MeasurementPoint {
	var out []*flotillav1.MeasurementPoint
	for _, m := range measurements {
		if m.FinishedAt == nil {
			continue
		}
		out = append(out, &flotillav1.MeasurementPoint{FinishedAt: timestamppb.New(m.FinishedAt.Time), Value: clip(m.Value), Phase: string(m.Phase)})
	}
	if n := len(out); n > maxHistory {
		out = out[n-maxHistory:]
	}
	return out
}

// clip cuts s to at most maxText bytes, on a rune boundary, marking the
// cut with "…".
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	const ellipsis = "…"
	cut := maxText - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
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
