package analysis

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// ReadSecrets gives the spec's secretKeyRef args their values, read with
// read, in memory only: a run keeps the reference and never the value, and
// Reconcile masks the values in everything it records.
func (s *Spec) ReadSecrets(read func(name, key string) (string, error)) error {
	for i := range s.Args {
		a := &s.Args[i]
		if a.ValueFrom == nil || a.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := a.ValueFrom.SecretKeyRef
		v, err := read(ref.Name, ref.Key)
		if err != nil {
			return fmt.Errorf("arg %q: %w", a.Name, err)
		}
		a.Value = &v
	}
	return nil
}

// masked is what a secret value reads as in a run's status.
const masked = "*****"

// masker hides the values of a spec's secret args, as written and as
// substituted into a metric (JSON-escaped).
type masker []string

func secretsOf(spec *Spec) masker {
	var m masker
	for _, a := range spec.Args {
		if a.ValueFrom == nil || a.ValueFrom.SecretKeyRef == nil || a.Value == nil || *a.Value == "" {
			continue
		}
		quoted, _ := json.Marshal(*a.Value)
		m = append(m, *a.Value, string(quoted[1:len(quoted)-1]))
	}
	return m
}

func (m masker) mask(text string) string {
	for _, secret := range m {
		text = strings.ReplaceAll(text, secret, masked)
	}
	return text
}

// withUnreadSecrets stands the masked value in for secret args not read: a
// terminated run takes no measurement, so it needs only the metrics'
// limits, not the Secrets.
func withUnreadSecrets(spec *Spec) *Spec {
	out := *spec
	out.Args = slices.Clone(spec.Args)
	for i := range out.Args {
		if a := &out.Args[i]; a.ValueFrom != nil && a.ValueFrom.SecretKeyRef != nil && a.Value == nil {
			v := masked
			a.Value = &v
		}
	}
	return &out
}
