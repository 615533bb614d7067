package analysis

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Merge builds a run's spec from templates and the args the rollout
// passes: metrics in template order (a name used twice is an error), dry-run
// entries combined, and every arg given a value: the rollout's, else the
// template's default. An arg with neither is an error naming it. Args in
// secrets are passed as a key of a Secret: the run keeps the reference, and
// ReadSecrets reads the value when measuring.
func Merge(templates []NamedSpec, args map[string]string, secrets map[string]SecretKeyRef) (Spec, error) {
	var out Spec
	seenMetric := map[string]string{}
	seenArg := map[string]bool{}
	for _, t := range templates {
		for _, m := range t.Spec.Metrics {
			if prev, ok := seenMetric[m.Name]; ok {
				return Spec{}, fmt.Errorf("metric %q is in both %s and %s", m.Name, prev, t.Name)
			}
			seenMetric[m.Name] = t.Name
			out.Metrics = append(out.Metrics, m)
		}
		out.DryRun = append(out.DryRun, t.Spec.DryRun...)
		for _, a := range t.Spec.Args {
			if seenArg[a.Name] {
				continue
			}
			seenArg[a.Name] = true
			ref, secret := secrets[a.Name]
			switch v, ok := args[a.Name]; {
			case ok:
				a.Value, a.ValueFrom = &v, nil
			case secret:
				a.Value, a.ValueFrom = nil, &ValueFrom{SecretKeyRef: &ref}
			case a.ValueFrom != nil && a.ValueFrom.SecretKeyRef != nil:
				// Read when measuring (ReadSecrets): the run keeps the reference.
			case a.Value == nil:
				return Spec{}, fmt.Errorf("%s: arg %q has no value: the rollout must pass it", t.Name, a.Name)
			}
			out.Args = append(out.Args, a)
		}
	}
	if len(out.Metrics) == 0 {
		return Spec{}, fmt.Errorf("%s: no metrics", names(templates))
	}
	return out, nil
}

// NamedSpec is a template's spec with the name errors give it
// ("AnalysisTemplate error-rate-check").
type NamedSpec struct {
	Name string
	Spec Spec
}

func names(ts []NamedSpec) string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return strings.Join(out, ", ")
}

var argRef = regexp.MustCompile(`\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}`)

// resolve substitutes {{args.name}} throughout a metric, as Argo Rollouts
// does, and checks what a measurement needs: a provider, durations,
// limits and conditions that compile.
func resolve(m Metric, args []Arg) (Metric, error) {
	values := map[string]string{}
	for _, a := range args {
		if a.Value != nil {
			values[a.Name] = *a.Value
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return Metric{}, err
	}
	var missing []string
	text := argRef.ReplaceAllStringFunc(string(raw), func(ref string) string {
		name := argRef.FindStringSubmatch(ref)[1]
		v, ok := values[name]
		if !ok {
			missing = append(missing, name)
			return ref
		}
		quoted, _ := json.Marshal(v)
		return string(quoted[1 : len(quoted)-1])
	})
	if len(missing) > 0 {
		return Metric{}, fmt.Errorf("metric %q: args.%s is not set", m.Name, strings.Join(missing, ", args."))
	}
	var out Metric
	if err := json.Unmarshal([]byte(text), &out); err != nil {
		return Metric{}, fmt.Errorf("metric %q: %w", m.Name, err)
	}
	return out, validate(&out)
}

// validate checks one resolved metric, naming the field at fault.
func validate(m *Metric) error {
	field := func(f string, err error) error { return fmt.Errorf("metric %q: %s: %w", m.Name, f, err) }
	if m.Name == "" {
		return fmt.Errorf("metric without a name")
	}
	set := 0
	for _, p := range []bool{m.Provider.Prometheus != nil, m.Provider.Web != nil, m.Provider.Job != nil} {
		if p {
			set++
		}
	}
	switch {
	case set > 1:
		return field("provider", fmt.Errorf("set one of prometheus, web and job"))
	case m.Provider.Prometheus != nil:
		if m.Provider.Prometheus.Address == "" || m.Provider.Prometheus.Query == "" {
			return field("provider.prometheus", fmt.Errorf("address and query are required"))
		}
	case m.Provider.Web != nil:
		if m.Provider.Web.URL == "" {
			return field("provider.web.url", fmt.Errorf("required"))
		}
	case m.Provider.Job != nil:
		if _, ok := m.Provider.Job.Spec["template"].(map[string]any); !ok {
			return field("provider.job.spec.template", fmt.Errorf("required"))
		}
	default:
		return field("provider", fmt.Errorf("only the prometheus, web and job providers are supported"))
	}
	if _, err := m.Interval.Get(); err != nil {
		return field("interval", err)
	}
	if _, err := m.InitialDelay.Get(); err != nil {
		return field("initialDelay", err)
	}
	for name, v := range map[string]*Limit{"count": m.Count, "failureLimit": m.FailureLimit, "inconclusiveLimit": m.InconclusiveLimit, "consecutiveErrorLimit": m.ConsecutiveErrorLimit} {
		if _, err := intValue(v, 0, name); err != nil {
			return field(name, err)
		}
	}
	for name, c := range map[string]string{"successCondition": m.SuccessCondition, "failureCondition": m.FailureCondition} {
		if c == "" {
			continue
		}
		if _, err := Compile(c); err != nil {
			return field(name, err)
		}
	}
	return nil
}

// dryRunSet names the metrics whose result does not decide the run.
func dryRunSet(spec *Spec) (map[string]bool, error) {
	out := map[string]bool{}
	for _, d := range spec.DryRun {
		re, err := regexp.Compile("^(?:" + d.MetricName + ")$")
		if err != nil {
			return nil, fmt.Errorf("dryRun metricName %q: %w", d.MetricName, err)
		}
		for _, m := range spec.Metrics {
			if re.MatchString(m.Name) {
				out[m.Name] = true
			}
		}
	}
	return out, nil
}
