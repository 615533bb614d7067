package render

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"

	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// jsonCompatible returns obj with every value a JSON-compatible type, the
// only ones unstructured.Unstructured's DeepCopy accepts: string, bool,
// int64, float64, nil, []any and map[string]any. Renderers hand back other
// types (Kustomize's kyaml gives int, YAML decoders may give
// map[any]any); a DeepCopy of those panics, so every rendered object is
// normalised here, once, before anything else sees it. A value no JSON
// could hold is an error naming its field.
func jsonCompatible(obj map[string]any) (map[string]any, error) {
	out, err := normalizeValue(obj, "")
	if err != nil {
		return nil, err
	}
	m, _ := out.(map[string]any)
	return m, nil
}

func normalizeValue(v any, field string) (any, error) {
	switch t := v.(type) {
	case nil, string, bool, int64, float64:
		return t, nil
	case int:
		return int64(t), nil
	case int8:
		return int64(t), nil
	case int16:
		return int64(t), nil
	case int32:
		return int64(t), nil
	case uint8:
		return int64(t), nil
	case uint16:
		return int64(t), nil
	case uint32:
		return int64(t), nil
	case uint:
		return uintValue(uint64(t), field)
	case uint64:
		return uintValue(t, field)
	case float32:
		return float64(t), nil
	case json.Number:
		return utiljsonNumber(t, field)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			n, err := normalizeValue(e, join(field, k))
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			key, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("%s: key %v is not a string", fieldName(field), k)
			}
			n, err := normalizeValue(e, join(field, key))
			if err != nil {
				return nil, err
			}
			out[key] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			n, err := normalizeValue(e, fmt.Sprintf("%s[%d]", field, i))
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	}
	// Anything else (a typed slice or map, a struct) goes through JSON,
	// which is what the API server will make of it anyway.
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Func || rv.Kind() == reflect.Chan || rv.Kind() == reflect.Complex64 || rv.Kind() == reflect.Complex128 {
		return nil, fmt.Errorf("%s: a %T is not a JSON value", fieldName(field), v)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fieldName(field), err)
	}
	var out any
	if err := utiljson.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", fieldName(field), err)
	}
	return normalizeValue(out, field)
}

func uintValue(u uint64, field string) (any, error) {
	if u > math.MaxInt64 {
		return nil, fmt.Errorf("%s: %d does not fit in a signed 64-bit integer", fieldName(field), u)
	}
	return int64(u), nil
}

func utiljsonNumber(n json.Number, field string) (any, error) {
	if i, err := n.Int64(); err == nil {
		return i, nil
	}
	f, err := n.Float64()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fieldName(field), err)
	}
	return f, nil
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func fieldName(field string) string {
	if field == "" {
		return "object"
	}
	return field
}
