package analysis

import (
	"fmt"
	"math"
	"reflect"
	"strconv"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// functions are the helpers Argo Rollouts offers in conditions.
var functions = map[string]any{
	"asInt":   asInt,
	"asFloat": asFloat,
	"isNaN":   math.IsNaN,
	"isInf":   func(f float64) bool { return math.IsInf(f, 0) },
	"isNil": func(v any) bool {
		return v == nil || (reflect.ValueOf(v).Kind() == reflect.Pointer && reflect.ValueOf(v).IsNil())
	},
	"default": func(v, def any) any {
		if v == nil {
			return def
		}
		return v
	},
}

func asInt(v any) (int64, error) {
	switch x := v.(type) {
	case string:
		return strconv.ParseInt(x, 10, 64)
	case float64:
		return int64(x), nil
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	}
	return 0, fmt.Errorf("asInt: cannot convert %T", v)
}

func asFloat(v any) (float64, error) {
	switch x := v.(type) {
	case string:
		return strconv.ParseFloat(x, 64)
	case float64:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	}
	return 0, fmt.Errorf("asFloat: cannot convert %T", v)
}

// env is what a condition sees: the measurement as result, and the helpers.
func env(result any) map[string]any {
	e := make(map[string]any, len(functions)+1)
	for k, v := range functions {
		e[k] = v
	}
	e["result"] = result
	return e
}

// Compile checks a condition's syntax before a run starts; its types are
// known only with a measurement's result.
func Compile(condition string) (*vm.Program, error) {
	return expr.Compile(condition)
}

// evalCondition runs condition against result.
func evalCondition(condition string, result any) (bool, error) {
	program, err := expr.Compile(condition, expr.Env(env(result)), expr.AsBool())
	if err != nil {
		return false, fmt.Errorf("condition %q: %w", condition, err)
	}
	out, err := expr.Run(program, env(result))
	if err != nil {
		return false, fmt.Errorf("condition %q: %w", condition, err)
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("condition %q did not return a bool", condition)
	}
	return b, nil
}

// Evaluate judges one measurement's result with the metric's conditions,
// exactly as Argo Rollouts' EvaluateResult does:
//
//   - neither condition: Successful;
//   - only successCondition: Successful when true, else Failed;
//   - only failureCondition: Failed when true, else Successful;
//   - both: Failed when failureCondition is true, Successful when
//     successCondition is, else Inconclusive.
//
// A condition that does not compile or fails to run is an Error.
func Evaluate(m *Metric, result any) (Phase, error) {
	var success, failure bool
	var err error
	if m.SuccessCondition != "" {
		if success, err = evalCondition(m.SuccessCondition, result); err != nil {
			return Error, err
		}
	}
	if m.FailureCondition != "" {
		if failure, err = evalCondition(m.FailureCondition, result); err != nil {
			return Error, err
		}
	}
	switch {
	case m.SuccessCondition == "" && m.FailureCondition == "":
		return Successful, nil
	case m.FailureCondition == "":
		failure = !success
	case m.SuccessCondition == "":
		success = !failure
	}
	switch {
	case failure:
		return Failed, nil
	case success:
		return Successful, nil
	}
	return Inconclusive, nil
}
