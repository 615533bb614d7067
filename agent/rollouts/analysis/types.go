package analysis

import (
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Phase is the state of a measurement, a metric or a run.
type Phase string

// The phases, as Argo Rollouts names them.
const (
	Pending      Phase = "Pending"
	Running      Phase = "Running"
	Successful   Phase = "Successful"
	Failed       Phase = "Failed"
	Error        Phase = "Error"
	Inconclusive Phase = "Inconclusive"
)

// Completed reports whether p is final.
func (p Phase) Completed() bool {
	switch p {
	case Successful, Failed, Error, Inconclusive:
		return true
	}
	return false
}

// order ranks phases from best to worst, as Argo Rollouts' IsWorse does.
var order = map[Phase]int{Pending: 0, Running: 1, Successful: 2, Inconclusive: 3, Error: 4, Failed: 5}

// Worse returns the worse of two phases.
func Worse(a, b Phase) Phase {
	if order[b] > order[a] {
		return b
	}
	return a
}

// Spec is an AnalysisTemplate's (and an AnalysisRun's) spec.
type Spec struct {
	Metrics []Metric `json:"metrics"`
	Args    []Arg    `json:"args,omitempty"`
	DryRun  []DryRun `json:"dryRun,omitempty"`
}

// DryRun names metrics (metricName may be a regular expression) whose
// result does not decide the run.
type DryRun struct {
	MetricName string `json:"metricName"`
}

// Arg is a template argument; a run's args all have values.
type Arg struct {
	Name      string     `json:"name"`
	Value     *string    `json:"value,omitempty"`
	ValueFrom *ValueFrom `json:"valueFrom,omitempty"`
}

// ValueFrom takes an arg's value from the rollout (the stable or latest
// pod-template hash, or a field of the Rollout) or from a Secret.
type ValueFrom struct {
	PodTemplateHashValue *string       `json:"podTemplateHashValue,omitempty"`
	FieldRef             *FieldRef     `json:"fieldRef,omitempty"`
	SecretKeyRef         *SecretKeyRef `json:"secretKeyRef,omitempty"`
}

// SecretKeyRef names a key of a Secret in the run's namespace.
type SecretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// FieldRef is a JSON path into the Rollout, like metadata.labels['x'].
type FieldRef struct {
	FieldPath string `json:"fieldPath"`
}

// Metric is one metric of a template or run.
type Metric struct {
	Name                  string   `json:"name"`
	Interval              Duration `json:"interval,omitempty"`
	InitialDelay          Duration `json:"initialDelay,omitempty"`
	Count                 *Limit   `json:"count,omitempty"`
	SuccessCondition      string   `json:"successCondition,omitempty"`
	FailureCondition      string   `json:"failureCondition,omitempty"`
	FailureLimit          *Limit   `json:"failureLimit,omitempty"`
	InconclusiveLimit     *Limit   `json:"inconclusiveLimit,omitempty"`
	ConsecutiveErrorLimit *Limit   `json:"consecutiveErrorLimit,omitempty"`
	Provider              Provider `json:"provider"`
}

// Provider is where a metric's measurements come from.
type Provider struct {
	Prometheus *Prometheus `json:"prometheus,omitempty"`
	Web        *Web        `json:"web,omitempty"`
	Job        *Job        `json:"job,omitempty"`
}

// Job is the job provider: each measurement is a Kubernetes Job made from
// this metadata and spec, Successful when the Job completes and Failed
// when it fails, as in Argo Rollouts.
type Job struct {
	Metadata JobMetadata    `json:"metadata,omitempty"`
	Spec     map[string]any `json:"spec"`
}

// JobMetadata is the labels and annotations a measurement's Job gets.
type JobMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Prometheus queries a Prometheus server; Timeout is in seconds.
type Prometheus struct {
	Address string `json:"address"`
	Query   string `json:"query"`
	Timeout *int64 `json:"timeout,omitempty"`
	// Headers go with every query (a bearer token for Thanos, Mimir or a
	// hosted Prometheus; take it from a secretKeyRef arg).
	Headers  []WebHeader `json:"headers,omitempty"`
	Insecure bool        `json:"insecure,omitempty"`
}

// Web calls an HTTP endpoint returning JSON; JSONPath picks the value.
type Web struct {
	URL            string      `json:"url"`
	Method         string      `json:"method,omitempty"`
	Headers        []WebHeader `json:"headers,omitempty"`
	Body           string      `json:"body,omitempty"`
	TimeoutSeconds int64       `json:"timeoutSeconds,omitempty"`
	JSONPath       string      `json:"jsonPath,omitempty"`
	Insecure       bool        `json:"insecure,omitempty"`
}

// WebHeader is one request header.
type WebHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Duration is Argo Rollouts' DurationString: "30s", "5m", "1h".
type Duration string

// Get parses d; empty is zero.
func (d Duration) Get() (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(string(d))
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a duration like 30s, 5m or 1h", string(d))
	}
	return v, nil
}

// Status is an AnalysisRun's status: the whole state of a run.
type Status struct {
	Phase         Phase          `json:"phase,omitempty"`
	Message       string         `json:"message,omitempty"`
	MetricResults []MetricResult `json:"metricResults,omitempty"`
	StartedAt     *metav1.Time   `json:"startedAt,omitempty"`
	RunSummary    *Summary       `json:"runSummary,omitempty"`
}

// Summary counts the metrics by phase.
type Summary struct {
	Count        int32 `json:"count,omitempty"`
	Successful   int32 `json:"successful,omitempty"`
	Failed       int32 `json:"failed,omitempty"`
	Inconclusive int32 `json:"inconclusive,omitempty"`
	Error        int32 `json:"error,omitempty"`
}

// MetricResult is one metric's measurements and counters.
type MetricResult struct {
	Name             string        `json:"name"`
	Phase            Phase         `json:"phase"`
	Measurements     []Measurement `json:"measurements,omitempty"`
	Message          string        `json:"message,omitempty"`
	Count            int32         `json:"count,omitempty"`
	Successful       int32         `json:"successful,omitempty"`
	Failed           int32         `json:"failed,omitempty"`
	Inconclusive     int32         `json:"inconclusive,omitempty"`
	Error            int32         `json:"error,omitempty"`
	ConsecutiveError int32         `json:"consecutiveError,omitempty"`
	DryRun           bool          `json:"dryRun,omitempty"`
}

// Measurement is one observation of a metric. One that takes a while (a
// Job) is Running, without FinishedAt, until it ends: Metadata names what
// it waits for and ResumeAt when to look again, as in Argo Rollouts.
type Measurement struct {
	Phase      Phase             `json:"phase"`
	Message    string            `json:"message,omitempty"`
	StartedAt  *metav1.Time      `json:"startedAt,omitempty"`
	FinishedAt *metav1.Time      `json:"finishedAt,omitempty"`
	Value      string            `json:"value,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	ResumeAt   *metav1.Time      `json:"resumeAt,omitempty"`
}

// inFlight reports whether m was started and has not ended.
func (m *Measurement) inFlight() bool { return m.FinishedAt == nil && m.Phase == Running }

// intValue reads an int-or-string limit ("3" is allowed after args are
// substituted), with def when unset.
func intValue(v *Limit, def int, field string) (int, error) {
	if v == nil {
		return def, nil
	}
	if v.Type == intstr.Int {
		return v.IntValue(), nil
	}
	n, err := strconv.Atoi(v.StrVal)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", field, v.StrVal)
	}
	return n, nil
}

// Limit is an int-or-string count (a string after {{args}} substitution).
type Limit = intstr.IntOrString
