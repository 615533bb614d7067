package analysis

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults Argo Rollouts documents.
const (
	defaultConsecutiveErrorLimit = 4
	measurementRetention         = 10
)

// Observe is called with each measurement as it is taken (for tracing).
type Observe func(metric string, m Measurement)

// Reconcile advances a run at now: it takes every measurement that is due,
// assesses each metric and the run, and returns when the run next needs
// attention (zero once it completed). st is updated in place; it is the
// run's whole state. A spec that cannot run ends the run as Error with a
// message naming the metric and field.
func Reconcile(ctx context.Context, spec *Spec, st *Status, now time.Time, measurer Measurer, observe Observe) time.Time {
	if st.Phase.Completed() {
		return time.Time{}
	}
	if st.StartedAt == nil {
		st.StartedAt = &metav1.Time{Time: now}
	}
	st.Phase = Running
	secrets := secretsOf(spec)
	metrics, dryRun, err := prepare(spec)
	if err != nil {
		st.Phase, st.Message = Error, secrets.mask(err.Error())
		return time.Time{}
	}
	var next time.Time
	for i := range metrics {
		m := &metrics[i]
		res := result(st, m.Name, dryRun[m.Name])
		if res.Phase.Completed() {
			continue
		}
		due := dueAt(m, res, st.StartedAt.Time)
		if !now.Before(due) {
			measure(ctx, m, res, now, measurer, observe, secrets)
			due = dueAt(m, res, st.StartedAt.Time)
		}
		res.Phase, res.Message = assess(m, res, false)
		res.Message = secrets.mask(res.Message)
		if !res.Phase.Completed() && (next.IsZero() || due.Before(next)) {
			next = due
		}
	}
	done := finish(st, metrics, dryRun, false)
	st.Message = secrets.mask(st.Message)
	if done {
		return time.Time{}
	}
	return next
}

// Terminate ends a run early (its rollout moved on): metrics still running
// are assessed as Argo Rollouts assesses a terminated run, Successful
// unless a limit was already broken.
func Terminate(spec *Spec, st *Status, now time.Time) {
	if st.Phase.Completed() {
		return
	}
	if st.StartedAt == nil {
		st.StartedAt = &metav1.Time{Time: now}
	}
	metrics, dryRun, err := prepare(withUnreadSecrets(spec))
	if err != nil {
		st.Phase, st.Message = Error, err.Error()
		return
	}
	for i := range metrics {
		res := result(st, metrics[i].Name, dryRun[metrics[i].Name])
		res.Phase, res.Message = assess(&metrics[i], res, true)
	}
	finish(st, metrics, dryRun, true)
	if st.Message == "" {
		st.Message = "run terminated"
	}
}

// prepare resolves the spec's metrics against its args.
func prepare(spec *Spec) ([]Metric, map[string]bool, error) {
	metrics := make([]Metric, len(spec.Metrics))
	for i, m := range spec.Metrics {
		r, err := resolve(m, spec.Args)
		if err != nil {
			return nil, nil, err
		}
		metrics[i] = r
	}
	dryRun, err := dryRunSet(spec)
	return metrics, dryRun, err
}

// result is the metric's entry in st, added as Pending when missing.
func result(st *Status, name string, dryRun bool) *MetricResult {
	for i := range st.MetricResults {
		if st.MetricResults[i].Name == name {
			return &st.MetricResults[i]
		}
	}
	st.MetricResults = append(st.MetricResults, MetricResult{Name: name, Phase: Pending, DryRun: dryRun})
	return &st.MetricResults[len(st.MetricResults)-1]
}

// dueAt is when the metric's next measurement is due: initialDelay after
// the run started for the first, interval after the last one finished for
// the rest.
func dueAt(m *Metric, res *MetricResult, started time.Time) time.Time {
	if len(res.Measurements) == 0 {
		delay, _ := m.InitialDelay.Get()
		return started.Add(delay)
	}
	interval, _ := m.Interval.Get()
	return res.Measurements[len(res.Measurements)-1].FinishedAt.Add(interval)
}

// measure takes one measurement and counts it as Argo Rollouts does: an
// Error adds to error and consecutiveError (not to count); any other phase
// adds to count and its own counter and resets consecutiveError.
func measure(ctx context.Context, m *Metric, res *MetricResult, now time.Time, measurer Measurer, observe Observe, secrets masker) {
	meas := Measurement{StartedAt: &metav1.Time{Time: now}}
	result, value, err := measurer.Measure(ctx, m.Provider)
	if err == nil {
		meas.Value = value
		meas.Phase, err = Evaluate(m, result)
	}
	if err != nil {
		meas.Phase, meas.Message = Error, err.Error()
	}
	meas.Value, meas.Message = secrets.mask(meas.Value), secrets.mask(meas.Message)
	meas.FinishedAt = &metav1.Time{Time: time.Now()}
	switch meas.Phase {
	case Error:
		res.Error++
		res.ConsecutiveError++
	case Successful:
		res.Successful++
	case Failed:
		res.Failed++
	case Inconclusive:
		res.Inconclusive++
	}
	if meas.Phase != Error {
		res.Count++
		res.ConsecutiveError = 0
	}
	res.Measurements = append(res.Measurements, meas)
	if n := len(res.Measurements); n > measurementRetention {
		res.Measurements = append([]Measurement(nil), res.Measurements[n-measurementRetention:]...)
	}
	if observe != nil {
		observe(m.Name, meas)
	}
}

// assess is Argo Rollouts' assessMetricStatus: Failed once failed
// measurements exceed failureLimit (default 0; negative: no limit),
// Inconclusive once inconclusive ones exceed inconclusiveLimit (default
// 0), Error once consecutive errors exceed consecutiveErrorLimit (default
// 4), Successful once count measurements were taken (a metric with neither
// count nor interval measures once; one with an interval and no count runs
// until its run is terminated).
func assess(m *Metric, res *MetricResult, terminating bool) (Phase, string) {
	if len(res.Measurements) == 0 && res.Count == 0 && res.Error == 0 {
		if terminating {
			return Successful, "metric was not measured before the run ended"
		}
		return Pending, ""
	}
	failureLimit, _ := intValue(m.FailureLimit, 0, "")
	inconclusiveLimit, _ := intValue(m.InconclusiveLimit, 0, "")
	errorLimit, _ := intValue(m.ConsecutiveErrorLimit, defaultConsecutiveErrorLimit, "")
	switch {
	case failureLimit >= 0 && int(res.Failed) > failureLimit:
		return Failed, fmt.Sprintf("metric %q assessed Failed due to failed (%d) > failureLimit (%d)", m.Name, res.Failed, failureLimit)
	case inconclusiveLimit >= 0 && int(res.Inconclusive) > inconclusiveLimit:
		return Inconclusive, fmt.Sprintf("metric %q assessed Inconclusive due to inconclusive (%d) > inconclusiveLimit (%d)", m.Name, res.Inconclusive, inconclusiveLimit)
	case errorLimit >= 0 && int(res.ConsecutiveError) > errorLimit:
		last := res.Measurements[len(res.Measurements)-1].Message
		return Error, fmt.Sprintf("metric %q assessed Error due to consecutiveErrors (%d) > consecutiveErrorLimit (%d): %s", m.Name, res.ConsecutiveError, errorLimit, last)
	}
	count, _ := intValue(m.Count, 0, "")
	interval, _ := m.Interval.Get()
	if m.Count == nil && interval == 0 {
		count = 1
	}
	if count > 0 && int(res.Count) >= count {
		return Successful, ""
	}
	if terminating {
		return Successful, "metric was terminated before it completed"
	}
	return Running, ""
}

// finish sets the run's phase from its metrics: the worst completed phase
// of the metrics that are not dry-run, once all completed or one of them
// did not succeed (Argo Rollouts then terminates the rest). It reports
// whether the run completed.
func finish(st *Status, metrics []Metric, dryRun map[string]bool, terminating bool) bool {
	worst, message, all := Phase(""), "", true
	summary := &Summary{}
	for i := range metrics {
		res := result(st, metrics[i].Name, dryRun[metrics[i].Name])
		if !res.Phase.Completed() {
			all = false
			continue
		}
		if dryRun[res.Name] {
			continue
		}
		summary.Count++
		switch res.Phase {
		case Successful:
			summary.Successful++
		case Failed:
			summary.Failed++
		case Inconclusive:
			summary.Inconclusive++
		case Error:
			summary.Error++
		}
		if worst == "" || Worse(worst, res.Phase) != worst {
			worst, message = res.Phase, res.Message
		}
	}
	st.RunSummary = summary
	failing := worst == Failed || worst == Error || worst == Inconclusive
	if !all && !failing && !terminating {
		st.Phase = Running
		return false
	}
	if failing && !all {
		// Argo Rollouts terminates a run once a metric failed: the others
		// stop where they are.
		for i := range metrics {
			res := result(st, metrics[i].Name, dryRun[metrics[i].Name])
			if !res.Phase.Completed() {
				res.Phase, res.Message = assess(&metrics[i], res, true)
			}
		}
	}
	if worst == "" {
		worst = Successful
	}
	st.Phase, st.Message = worst, message
	return true
}
