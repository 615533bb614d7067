package appspec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// Operators of a RollingSync step's match expressions: the only two Argo
// CD accepts.
const (
	OperatorIn    = "In"
	OperatorNotIn = "NotIn"
)

// RollingSync is the set's RollingSync steps, nil unless its strategy is
// RollingSync with at least one step: Argo CD then updates every
// Application at once.
func (s *ApplicationSet) RollingSync() []RollingSyncStep {
	st := s.Spec.Strategy
	if st == nil || st.Type != StrategyRollingSync || st.RollingSync == nil {
		return nil
	}
	return st.RollingSync.Steps
}

// Selects reports whether the step selects an Application with labels, as
// Argo CD's buildAppDependencyList does: every expression must hold; a
// label the Application lacks fails an In expression only (NotIn and no
// expressions at all select it); a label that is present must be among
// an In expression's values and among none of a NotIn's.
//
// An operator other than In and NotIn selects nothing. Argo CD lets such
// an expression pass when the label is missing; decoding rejects the
// operator, so only a step built by hand can differ.
func (st RollingSyncStep) Selects(labels map[string]string) bool {
	for _, e := range st.MatchExpressions {
		if e.Operator != OperatorIn && e.Operator != OperatorNotIn {
			return false
		}
		val, ok := labels[e.Key]
		if !ok {
			if e.Operator == OperatorIn {
				return false
			}
			continue
		}
		if slices.Contains(e.Values, val) != (e.Operator == OperatorIn) {
			return false
		}
	}
	return true
}

// StepOf is the index of the first step that selects an Application with
// labels, or -1 when none does: Argo CD leaves such an Application out of
// the rolling sync, to be synced only by hand. An Application two steps
// select belongs to the first, as in Argo CD.
func StepOf(steps []RollingSyncStep, labels map[string]string) int {
	return slices.IndexFunc(steps, func(st RollingSyncStep) bool { return st.Selects(labels) })
}

// MaxUpdate is how many of a step's total Applications (or a wave's
// clusters) are updated at a time, as Argo CD's
// UpdateApplicationSetApplicationStatusProgress computes it: all when v is
// nil; a percentage of total rounded down, but at least 1 unless it is
// "0%"; an int as it is (0: none until an operator promotes the wave).
// The result is capped at total, which Argo CD treats the same as any
// larger value. It returns an error if v is negative or malformed
// (a string that is not a percentage).
func MaxUpdate(v *intstr.IntOrString, total int) (int, error) {
	if v == nil {
		return total, nil
	}
	pct, err := checkIntOrPercent(v)
	if err != nil {
		return 0, err
	}
	scaled := v
	if pct > 100 {
		// Past 100% the product can overflow; any of it means total.
		scaled = &intstr.IntOrString{Type: intstr.String, StrVal: "100%"}
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(scaled, total, false)
	if err != nil {
		return 0, err
	}
	if v.Type == intstr.String && v.StrVal != "0%" && n < 1 {
		n = 1
	}
	return min(n, total), nil
}

// checkIntOrPercent returns an error unless v is a non-negative int or a
// non-negative percentage ("25%"); for a percentage it returns its value.
func checkIntOrPercent(v *intstr.IntOrString) (int, error) {
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return 0, fmt.Errorf("%d is negative", v.IntVal)
		}
		return 0, nil
	}
	digits, ok := strings.CutSuffix(v.StrVal, "%")
	n, err := strconv.Atoi(digits)
	switch {
	case !ok || err != nil:
		return 0, fmt.Errorf("%q is neither a number nor a percentage", v.StrVal)
	case n < 0:
		return 0, fmt.Errorf("%q is negative", v.StrVal)
	}
	return n, nil
}

// validateStrategy checks spec.strategy as Argo CD reads it: a known
// type and, for RollingSync, at least one step, In or NotIn expressions
// and well-formed maxUpdates. Argo CD accepts such mistakes and reports
// them, if at all, in the ApplicationSet's conditions; here they fail it.
func validateStrategy(st *ApplicationSetStrategy) error {
	fail := func(field, format string, args ...any) error {
		return &Error{Field: "spec.strategy" + field, Reason: fmt.Sprintf(format, args...)}
	}
	switch st.Type {
	case "", StrategyAllAtOnce:
		return nil
	case StrategyRollingSync:
	default:
		return fail(".type", "%q: want %s or %s", st.Type, StrategyAllAtOnce, StrategyRollingSync)
	}
	if st.RollingSync == nil {
		return nil // Argo CD then updates every Application at once
	}
	if len(st.RollingSync.Steps) == 0 {
		return fail(".rollingSync.steps", "no steps defined for rollout: Argo CD updates no Application")
	}
	for i, step := range st.RollingSync.Steps {
		for j, e := range step.MatchExpressions {
			if e.Operator != OperatorIn && e.Operator != OperatorNotIn {
				return fail(fmt.Sprintf(".rollingSync.steps[%d].matchExpressions[%d].operator", i, j), "%q: want %s or %s", e.Operator, OperatorIn, OperatorNotIn)
			}
		}
		if step.MaxUpdate != nil {
			if _, err := checkIntOrPercent(step.MaxUpdate); err != nil {
				return fail(fmt.Sprintf(".rollingSync.steps[%d].maxUpdate", i), "%v", err)
			}
		}
	}
	return nil
}
