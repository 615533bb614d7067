package appspec

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// FuzzParseWaves reads arbitrary text as the flotilla.dev/waves
// annotation. Nothing panics; an error is an *Error naming a field of the
// annotation; and what it accepts is within bounds: a valid cluster
// label, at most 64 gates, bake times of 0 to 24h, and maxUpdate and
// minSuccessful values MaxUpdate resolves to 0..total.
func FuzzParseWaves(f *testing.F) {
	for _, seed := range []string{
		`
clusterLabel: flotilla.dev/wave
autoRollback: true
gates:
- bakeTime: 2m
  maxUpdate: 25%
  analysis:
    templates: [{templateName: error-rate}, {templateName: x, clusterScope: true}]
    args: [{name: service, value: web}, {name: token, valueFrom: {secretKeyRef: {name: s, key: k}}}]
  minSuccessful: 100%
  approval: true
- {}
`,
		`{"gates":[{"bakeTime":"24h","maxUpdate":0},{"maxUpdate":"0%"}]}`,
		"gates: [{bakeTime: -1s}, {maxUpdate: -1}]",
		"gates: [{analysis: {templates: [{templateName: a}], args: [{name: b}]}}]",
		"clusterLabel: example.com/",
		"a: &x [*x, *x]\nb: &y [*x, *x]",
		"- 1",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		w, err := parseWaves(value)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !strings.HasPrefix(e.Field, wavesField) {
				t.Fatalf("error %v does not name a field of the annotation", err)
			}
			return
		}
		if w.ClusterLabel != "" {
			if _, err := ParseSelector(w.ClusterLabel); err != nil {
				t.Fatalf("accepted the cluster label %q: %v", w.ClusterLabel, err)
			}
		}
		if len(w.Gates) > maxGates {
			t.Fatalf("accepted %d gates", len(w.Gates))
		}
		for i := range len(w.Gates) + 1 {
			g := w.Gate(i)
			if g.BakeTime < 0 || g.BakeTime > maxBakeTime {
				t.Fatalf("gate %d: accepted the bake time %s", i, g.BakeTime)
			}
			for _, total := range []int{0, 1, 7, 1000} {
				for name, v := range map[string]*intstr.IntOrString{"maxUpdate": g.MaxUpdate, "minSuccessful": g.MinSuccessful} {
					if n, err := MaxUpdate(v, total); err != nil || n < 0 || n > total {
						t.Fatalf("gate %d: %s %v of %d clusters = %d, %v", i, name, v, total, n, err)
					}
				}
			}
		}
	})
}
