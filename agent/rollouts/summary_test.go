package rollouts

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

var measuredFrom = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// measured is the i-th measurement of a metric, a second after the one
// before.
func measured(i int, phase analysis.Phase) analysis.Measurement {
	at := metav1.NewTime(measuredFrom.Add(time.Duration(i) * time.Second))
	return analysis.Measurement{Phase: phase, StartedAt: &at, FinishedAt: &at, Value: fmt.Sprintf("[0.0%d]", i)}
}

func point(i int, phase analysis.Phase) *flotillav1.MeasurementPoint {
	return &flotillav1.MeasurementPoint{FinishedAt: timestamppb.New(measuredFrom.Add(time.Duration(i) * time.Second)), Value: fmt.Sprintf("[0.0%d]", i), Phase: string(phase)}
}

// A metric reports its conditions as the run's spec writes them, its
// latest measurement, and its history oldest first; a measurement still
// in flight has nothing to plot yet.
func TestMeasurementsCarryConditionsAndHistory(t *testing.T) {
	spec := &analysis.Spec{Metrics: []analysis.Metric{
		{Name: "error-rate", SuccessCondition: "result[0] < 0.05", FailureCondition: "result[0] >= 0.1"},
		{Name: "smoke", SuccessCondition: "result == true"},
	}}
	running := analysis.Measurement{Phase: analysis.Running, StartedAt: &metav1.Time{Time: measuredFrom.Add(time.Minute)}}
	status := &analysis.Status{MetricResults: []analysis.MetricResult{
		{Name: "error-rate", Phase: analysis.Running, Count: 3, Failed: 1,
			Measurements: []analysis.Measurement{measured(1, analysis.Successful), measured(2, analysis.Failed), measured(3, analysis.Successful)}},
		{Name: "smoke", Phase: analysis.Running, Count: 1, Measurements: []analysis.Measurement{measured(1, analysis.Successful), running}},
		{Name: "gone-from-spec", Phase: analysis.Pending},
	}}
	want := []*flotillav1.MeasurementStatus{
		{Metric: "error-rate", Phase: "Running", Value: "[0.03]", FinishedAt: point(3, "").GetFinishedAt(), Count: 3, Failed: 1,
			SuccessCondition: "result[0] < 0.05", FailureCondition: "result[0] >= 0.1",
			History: []*flotillav1.MeasurementPoint{point(1, analysis.Successful), point(2, analysis.Failed), point(3, analysis.Successful)}},
		{Metric: "smoke", Phase: "Running", Count: 1, SuccessCondition: "result == true",
			History: []*flotillav1.MeasurementPoint{point(1, analysis.Successful)}},
		{Metric: "gone-from-spec", Phase: "Pending"},
	}
	if diff := cmp.Diff(want, measurementsOf(spec, status), protocmp.Transform()); diff != "" {
		t.Errorf("measurements (-want +got):\n%s", diff)
	}
}

// A run may keep more measurements than the status has room for: the
// newest maxHistory are reported, oldest first.
func TestHistoryKeepsTheNewestInOrder(t *testing.T) {
	for _, n := range []int{0, 1, maxHistory, maxHistory + 1, 3 * maxHistory} {
		var measurements []analysis.Measurement
		var want []*flotillav1.MeasurementPoint
		for i := range n {
			measurements = append(measurements, measured(i, analysis.Successful))
			if i >= n-maxHistory {
				want = append(want, point(i, analysis.Successful))
			}
		}
		if diff := cmp.Diff(want, historyOf(measurements), protocmp.Transform()); diff != "" {
			t.Errorf("%d measurements: history (-want +got):\n%s", n, diff)
		}
	}
}

// A measured value can be a whole JSON document (a web metric's): the
// history holds at most maxText bytes of it, cut between runes.
func TestHistoryBoundsAValue(t *testing.T) {
	m := measured(1, analysis.Successful)
	m.Value = "[" + strings.Repeat("0.5é, ", 100) + "]"
	got := historyOf([]analysis.Measurement{m})[0].GetValue()
	if len(got) > maxText || !utf8.ValidString(got) || !strings.HasPrefix(got, "[0.5é, 0.5é") || !strings.HasSuffix(got, "…") {
		t.Errorf("value of %d bytes kept as %d bytes: %q", len(m.Value), len(got), got)
	}
	if cut := clip(strings.Repeat("é", maxText)); len(cut) > maxText || !utf8.ValidString(cut) {
		t.Errorf("clip cut a rune: %q", cut)
	}
	if short := "0.012"; clip(short) != short {
		t.Errorf("clip(%q) = %q", short, clip(short))
	}
}
