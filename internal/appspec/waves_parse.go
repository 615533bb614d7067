package appspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Bounds of the flotilla.dev/waves annotation.
const (
	// maxWavesSize is checked before the YAML is parsed (Kubernetes allows
	// 256 KiB for all of an object's annotations).
	maxWavesSize = 64 << 10
	maxGates     = 64
	maxBakeTime  = 24 * time.Hour
)

// wavesField is the field path of the annotation in errors.
var wavesField = fmt.Sprintf("metadata.annotations[%q]", WavesAnnotation)

// wavesDoc is the annotation as written. Its Gates shadow those of the
// embedded Waves, which parseWaves fills from them.
type wavesDoc struct {
	Waves
	Gates []gateDoc `json:"gates,omitempty"`
}

// gateDoc is a gate as written: bakeTime is a Go duration ("2m"), which
// parseWaves reads into the embedded WaveGate's BakeTime.
type gateDoc struct {
	WaveGate
	BakeTime string `json:"bakeTime,omitempty"`
}

// parseWaves reads and validates the value of the flotilla.dev/waves
// annotation: YAML in which an unknown field is an error. It returns an
// *Error naming the field (without Kind and Name).
func parseWaves(value string) (*Waves, error) {
	fail := func(sub, format string, args ...any) error {
		return &Error{Field: wavesField + sub, Reason: fmt.Sprintf(format, args...)}
	}
	if len(value) > maxWavesSize {
		return nil, fail("", "is %d bytes, more than %d", len(value), maxWavesSize)
	}
	data, err := yaml.YAMLToJSONStrict([]byte(value))
	if err != nil {
		return nil, fail("", "%v", err)
	}
	doc, err := decodeWavesDoc(data)
	if err != nil {
		return nil, fail("", "%v", err)
	}
	w := doc.Waves
	if w.ClusterLabel != "" {
		if errs := validation.IsQualifiedName(w.ClusterLabel); len(errs) > 0 {
			return nil, fail(".clusterLabel", "%q is not a label key: %s", w.ClusterLabel, strings.Join(errs, "; "))
		}
	}
	if len(doc.Gates) > maxGates {
		return nil, fail(".gates", "%d gates, at most %d", len(doc.Gates), maxGates)
	}
	for i, g := range doc.Gates {
		field := fmt.Sprintf(".gates[%d]", i)
		if g.WaveGate.BakeTime, err = parseBakeTime(g.BakeTime); err != nil {
			return nil, fail(field+".bakeTime", "%v", err)
		}
		if err := validateGate(g.WaveGate); err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Field = wavesField + field + e.Field
			}
			return nil, err
		}
		w.Gates = append(w.Gates, g.WaveGate)
	}
	return &w, nil
}

// embeddedNames drops the Go names of wavesDoc's and gateDoc's embedded
// structs from the field path of a type error ("gates.WaveGate.approval").
var embeddedNames = strings.NewReplacer("Waves.", "", "WaveGate.", "")

// decodeWavesDoc decodes the annotation's JSON form, failing on a field
// wavesDoc does not have and naming the field of a wrong type.
func decodeWavesDoc(data []byte) (wavesDoc, error) {
	var doc wavesDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return doc, err
		}
		if field := embeddedNames.Replace(strings.TrimPrefix(typeErr.Field, ".")); field != "" {
			return doc, fmt.Errorf("%s: cannot be %s (want %s)", field, typeErr.Value, typeErr.Type)
		}
		return doc, fmt.Errorf("cannot be %s (want a mapping)", typeErr.Value)
	}
	return doc, nil
}

// parseBakeTime reads a Go duration between 0 and 24h; empty is 0.
func parseBakeTime(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration (want e.g. 90s, 2m, 1h)", s)
	case d < 0:
		return 0, fmt.Errorf("%q is negative", s)
	case d > maxBakeTime:
		return 0, fmt.Errorf("%q is more than %s", s, maxBakeTime)
	}
	return d, nil
}

// validateGate checks a gate but its bake time; the *Error it returns
// names the field under the gate (".analysis.templates[0].templateName").
func validateGate(g WaveGate) error {
	fail := func(field, format string, args ...any) error {
		return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	for _, n := range []struct {
		field string
		v     *intstr.IntOrString
	}{{".maxUpdate", g.MaxUpdate}, {".minSuccessful", g.MinSuccessful}} {
		if n.v == nil {
			continue
		}
		if _, err := checkIntOrPercent(n.v); err != nil {
			return fail(n.field, "%v", err)
		}
	}
	if g.MinSuccessful != nil && g.Analysis == nil {
		return fail(".minSuccessful", "counts the clusters whose analysis succeeds: set analysis")
	}
	a := g.Analysis
	if a == nil {
		return nil
	}
	if len(a.Templates) == 0 {
		return fail(".analysis.templates", "at least one template is required")
	}
	for i, t := range a.Templates {
		if t.TemplateName == "" {
			return fail(fmt.Sprintf(".analysis.templates[%d].templateName", i), "is required")
		}
	}
	for i, arg := range a.Args {
		field := fmt.Sprintf(".analysis.args[%d]", i)
		if arg.Name == "" {
			return fail(field+".name", "is required")
		}
		if (arg.Value != "") == (arg.ValueFrom != nil) {
			return fail(field, "set exactly one of value and valueFrom.secretKeyRef")
		}
		if arg.ValueFrom == nil {
			continue
		}
		ref := arg.ValueFrom.SecretKeyRef
		switch {
		case ref == nil:
			return fail(field+".valueFrom.secretKeyRef", "is required")
		case ref.Name == "":
			return fail(field+".valueFrom.secretKeyRef.name", "is required")
		case ref.Key == "":
			return fail(field+".valueFrom.secretKeyRef.key", "is required")
		}
	}
	return nil
}

// annotatedWaves parses the flotilla.dev/waves annotation of an object of
// kind; nil when it has none.
func annotatedWaves(kind string, meta ObjectMeta) (*Waves, error) {
	value, ok := meta.Annotations[WavesAnnotation]
	if !ok {
		return nil, nil
	}
	w, err := parseWaves(value)
	var e *Error
	if errors.As(err, &e) {
		e.Kind, e.Name = kind, meta.Name
	}
	return w, err
}

// decodeWaves parses the set's flotilla.dev/waves annotation; nil when it
// has none. With RollingSync the steps are the waves: a clusterLabel, a
// gate's maxUpdate (each step has its own) or more gates than steps is an
// error.
func (s *ApplicationSet) decodeWaves() (*Waves, error) {
	fail := func(field, format string, args ...any) error {
		return &Error{Kind: KindApplicationSet, Name: s.Metadata.Name, Field: wavesField + field, Reason: fmt.Sprintf(format, args...)}
	}
	w, err := annotatedWaves(KindApplicationSet, s.Metadata)
	steps := s.RollingSync()
	if w == nil || err != nil || steps == nil {
		return w, err
	}
	if w.ClusterLabel != "" {
		return nil, fail(".clusterLabel", "the RollingSync steps of spec.strategy are the waves: remove clusterLabel")
	}
	if len(w.Gates) > len(steps) {
		return nil, fail(".gates", "%d gates for %d RollingSync steps", len(w.Gates), len(steps))
	}
	for i, g := range w.Gates {
		if g.MaxUpdate != nil {
			return nil, fail(fmt.Sprintf(".gates[%d].maxUpdate", i), "set spec.strategy.rollingSync.steps[%d].maxUpdate instead", i)
		}
	}
	return w, nil
}
