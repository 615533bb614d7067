package analysis

import (
	"context"
	"fmt"
	"math"
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

// Jobs runs the job provider's measurements for one AnalysisRun, each a
// Kubernetes Job owned by the run.
type Jobs interface {
	// Start creates the Job of the metric's measurement number id (from
	// 1) and returns what names it, kept in the measurement's metadata.
	// A Job of that name the run created before is taken as it is.
	Start(ctx context.Context, metric string, id int, job *Job) (map[string]string, error)
	// Check reports the phase of the Job metadata names: Running while
	// it runs, Successful once it completed, Failed once it failed, and
	// Inconclusive (with the reason) when one of its pods cannot start.
	Check(ctx context.Context, metadata map[string]string) (Phase, string, error)
	// Stop deletes the Job metadata names: its run ended while it ran.
	Stop(ctx context.Context, metadata map[string]string) error
	// Prune deletes the metric's oldest Jobs beyond the newest keep.
	Prune(ctx context.Context, metric string, keep int) error
}

// Env is what a run's measurements are taken with.
type Env struct {
	// Measurer takes the prometheus and web providers' measurements.
	Measurer Measurer
	// Jobs runs the job provider's; nil makes a job metric's measurements
	// errors.
	Jobs Jobs
	// Observe, when set, sees each measurement as it ends.
	Observe Observe
}

// Reconcile advances a run at now: it takes every measurement that is due,
// looks again at the ones in flight (Jobs), assesses each metric and the
// run, and returns when the run next needs attention (zero once it
// completed). st is updated in place; it is the run's whole state. A spec
// that cannot run ends the run as Error with a message naming the metric
// and field.
func Reconcile(ctx context.Context, spec *Spec, st *Status, now time.Time, env Env) time.Time {
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
			env.take(ctx, m, res, now, secrets)
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
		// A metric that failed ends the run: Jobs still running stop.
		env.stopInFlight(ctx, st, now)
		return time.Time{}
	}
	return next
}

// Terminate ends a run early (its rollout moved on): Jobs still running
// are deleted, and metrics still running are assessed as Argo Rollouts
// assesses a terminated run, Successful unless a limit was already broken.
func Terminate(ctx context.Context, spec *Spec, st *Status, now time.Time, jobs Jobs) {
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
	Env{Jobs: jobs}.stopInFlight(ctx, st, now)
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
// the rest, and for one in flight when it is to be looked at again.
func dueAt(m *Metric, res *MetricResult, started time.Time) time.Time {
	if len(res.Measurements) == 0 {
		delay, _ := m.InitialDelay.Get()
		return started.Add(delay)
	}
	last := &res.Measurements[len(res.Measurements)-1]
	if last.inFlight() {
		if last.ResumeAt == nil {
			return started
		}
		return last.ResumeAt.Time
	}
	interval, _ := m.Interval.Get()
	return last.FinishedAt.Add(interval)
}

// take takes the metric's due measurement: from a synchronous provider at
// once; for the job provider it starts a Job, or looks again at the one
// in flight.
func (e Env) take(ctx context.Context, m *Metric, res *MetricResult, now time.Time, secrets masker) {
	if m.Provider.Job == nil {
		meas := Measurement{StartedAt: &metav1.Time{Time: now}}
		began := time.Now()
		result, value, err := e.Measurer.Measure(ctx, m.Provider)
		if err == nil {
			meas.Value = value
			meas.Phase, err = Evaluate(m, result)
		}
		if err != nil {
			meas.Phase, meas.Message = Error, err.Error()
		}
		e.record(m.Name, res, meas, now.Add(time.Since(began)), secrets)
		return
	}
	if n := len(res.Measurements); n > 0 && res.Measurements[n-1].inFlight() {
		e.resume(ctx, m, res, now, secrets)
		return
	}
	meas := Measurement{StartedAt: &metav1.Time{Time: now}, Phase: Running, ResumeAt: &metav1.Time{Time: now}}
	var err error
	if e.Jobs == nil {
		err = fmt.Errorf("the job provider is not available")
	} else {
		// Argo Rollouts numbers a metric's Jobs by the measurements taken.
		meas.Metadata, err = e.Jobs.Start(ctx, m.Name, int(res.Count+res.Error+1), m.Provider.Job)
	}
	if err != nil {
		meas.Phase, meas.Message, meas.ResumeAt = Error, err.Error(), nil
		e.record(m.Name, res, meas, now, secrets)
		return
	}
	res.Measurements = append(res.Measurements, meas)
}

// resume looks at the metric's Job in flight: once it ended, the
// measurement is recorded (and the metric's oldest Jobs beyond the
// measurements kept are deleted); while it runs, the next look is due
// after a delay that grows with its age, as in Argo Rollouts.
func (e Env) resume(ctx context.Context, m *Metric, res *MetricResult, now time.Time, secrets masker) {
	meas := res.Measurements[len(res.Measurements)-1]
	res.Measurements = res.Measurements[:len(res.Measurements)-1]
	phase, message, err := Phase(""), "", error(nil)
	if e.Jobs == nil {
		err = fmt.Errorf("the job provider is not available")
	} else {
		phase, message, err = e.Jobs.Check(ctx, meas.Metadata)
	}
	switch {
	case err != nil:
		meas.Phase, meas.Message = Error, err.Error()
	case phase == Running:
		elapsed := time.Duration(0)
		if meas.StartedAt != nil { // a status read back may lack it
			elapsed = now.Sub(meas.StartedAt.Time)
		}
		delay := max(time.Duration(math.Sqrt(2*elapsed.Seconds())*float64(time.Second)), minResumeDelay)
		meas.ResumeAt = &metav1.Time{Time: now.Add(delay)}
		res.Measurements = append(res.Measurements, meas)
		return
	default:
		meas.Phase, meas.Message = phase, message
	}
	meas.ResumeAt = nil
	e.record(m.Name, res, meas, now, secrets)
	if err := e.Jobs.Prune(ctx, m.Name, measurementRetention); err != nil {
		res.Message = secrets.mask("deleting old Jobs: " + err.Error())
	}
}

// minResumeDelay bounds how often a Job in flight is looked at.
const minResumeDelay = time.Second

// stopInFlight ends the measurements still in flight of a run that ended:
// their Jobs are deleted, and each counts as Inconclusive ("Metric
// Terminated"), as Argo Rollouts' job provider terminates them.
func (e Env) stopInFlight(ctx context.Context, st *Status, now time.Time) {
	for i := range st.MetricResults {
		res := &st.MetricResults[i]
		n := len(res.Measurements)
		if n == 0 || !res.Measurements[n-1].inFlight() {
			continue
		}
		meas := res.Measurements[n-1]
		res.Measurements = res.Measurements[:n-1]
		meas.Phase, meas.Message, meas.ResumeAt = Inconclusive, "Metric Terminated", nil
		if e.Jobs == nil {
			meas.Phase, meas.Message = Error, "the job provider is not available"
		} else if err := e.Jobs.Stop(ctx, meas.Metadata); err != nil {
			meas.Phase, meas.Message = Error, err.Error()
		}
		meas.FinishedAt = &metav1.Time{Time: now}
		count(res, meas)
	}
}

// record adds a measurement that finished at finished and counts it.
func (e Env) record(metric string, res *MetricResult, meas Measurement, finished time.Time, secrets masker) {
	meas.Value, meas.Message = secrets.mask(meas.Value), secrets.mask(meas.Message)
	meas.FinishedAt = &metav1.Time{Time: finished}
	count(res, meas)
	if e.Observe != nil {
		e.Observe(metric, meas)
	}
}

// count adds a finished measurement to res as Argo Rollouts counts it: an
// Error adds to error and consecutiveError (not to count); any other phase
// adds to count and its own counter and resets consecutiveError. The
// newest measurementRetention are kept.
func count(res *MetricResult, meas Measurement) {
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
	if n := len(res.Measurements); n > 0 && res.Measurements[n-1].inFlight() && !terminating {
		return Running, ""
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
