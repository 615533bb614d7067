package diff

import (
	"fmt"
	"reflect"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/agent/apply"
)

// Object returns the unified diff from live to desired; either may be nil
// (a create or a prune). name labels the two sides. Both are compared as
// apply.Comparable sees them (no server bookkeeping, no status), and
// Secret values are masked.
func Object(name string, live, desired *unstructured.Unstructured) (string, error) {
	live, desired = apply.Comparable(live), apply.Comparable(desired)
	maskSecrets(live, desired)
	a, err := document(live)
	if err != nil {
		return "", fmt.Errorf("%s: live: %w", name, err)
	}
	b, err := document(desired)
	if err != nil {
		return "", fmt.Errorf("%s: desired: %w", name, err)
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a), B: difflib.SplitLines(b),
		FromFile: "live/" + name, ToFile: "desired/" + name, Context: 3,
	})
}

func document(obj *unstructured.Unstructured) (string, error) {
	if obj == nil {
		return "", nil
	}
	data, err := yaml.Marshal(obj.Object)
	return string(data), err
}

// Masks of Secret values, as Argo CD masks them: a value that is the same
// on both sides shows as unchanged, one that changed shows as changed, and
// nothing of either value is shown.
const (
	masked        = "++++++++"
	maskedChanged = "+++++++++"
)

// maskSecrets replaces the values of Secrets' data and stringData.
func maskSecrets(live, desired *unstructured.Unstructured) {
	for _, field := range []string{"data", "stringData"} {
		var before map[string]any
		if isSecret(live) {
			before, _, _ = unstructured.NestedMap(live.Object, field)
		}
		if isSecret(desired) {
			after, _, _ := unstructured.NestedMap(desired.Object, field)
			for k, v := range after {
				if old, ok := before[k]; ok && !reflect.DeepEqual(old, v) {
					after[k] = maskedChanged
				} else {
					after[k] = masked
				}
			}
			if after != nil {
				_ = unstructured.SetNestedMap(desired.Object, after, field)
			}
		}
		for k := range before {
			before[k] = masked
		}
		if before != nil {
			_ = unstructured.SetNestedMap(live.Object, before, field)
		}
	}
}

func isSecret(obj *unstructured.Unstructured) bool {
	return obj != nil && obj.GetKind() == "Secret" && obj.GetAPIVersion() == "v1"
}
