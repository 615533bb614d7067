package ignore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/itchyny/gojq"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Bounds of one jq path expression's evaluation on one object.
const (
	jqTimeout  = time.Second
	maxJQPaths = 10000
)

// Path is a concrete location in an object: map keys and list indexes.
type Path []any

// Rules are compiled ignoreDifferences entries.
type Rules struct {
	rules []rule
}

type rule struct {
	field                        string // spec.ignoreDifferences[i], for messages
	group, kind, name, namespace string
	pointers                     []Path
	jq                           []*gojq.Code
	managers                     []string
}

// FieldError is an entry that does not compile, with the Application
// field it is in: spec.ignoreDifferences[1].jsonPointers[0].
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Compile checks and compiles the entries; an error is a *FieldError.
func Compile(entries []*flotillav1.IgnoreDifferences) (*Rules, error) {
	r := &Rules{}
	for i, e := range entries {
		field := fmt.Sprintf("spec.ignoreDifferences[%d]", i)
		if e.GetKind() == "" {
			return nil, &FieldError{Field: field + ".kind", Err: errors.New("is required")}
		}
		ru := rule{field: field, group: e.GetGroup(), kind: e.GetKind(), name: e.GetName(), namespace: e.GetNamespace(), managers: e.GetManagedFieldsManagers()}
		for j, p := range e.GetJsonPointers() {
			path, err := parsePointer(p)
			if err != nil {
				return nil, &FieldError{Field: fmt.Sprintf("%s.jsonPointers[%d]", field, j), Err: err}
			}
			ru.pointers = append(ru.pointers, path)
		}
		for j, expr := range e.GetJqPathExpressions() {
			q, err := gojq.Parse("path(" + expr + ")")
			if err == nil {
				var code *gojq.Code
				if code, err = gojq.Compile(q); err == nil {
					ru.jq = append(ru.jq, code)
					continue
				}
			}
			return nil, &FieldError{Field: fmt.Sprintf("%s.jqPathExpressions[%d]", field, j), Err: fmt.Errorf("%q: %w", expr, err)}
		}
		r.rules = append(r.rules, ru)
	}
	return r, nil
}

// Unmatched names the entries that match none of objs: most likely a
// typo in group, kind, name or namespace.
func (r *Rules) Unmatched(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, ru := range r.rules {
		if !slices.ContainsFunc(objs, ru.matches) {
			out = append(out, fmt.Sprintf("%s (%s %s) matches no object", ru.field, ru.kind, strings.Trim(ru.namespace+"/"+ru.name, "/")))
		}
	}
	return out
}

// Match reports whether any rule applies to obj.
func (r *Rules) Match(obj *unstructured.Unstructured) bool {
	if r == nil {
		return false
	}
	for _, ru := range r.rules {
		if ru.matches(obj) {
			return true
		}
	}
	return false
}

// Empty reports whether there are no rules.
func (r *Rules) Empty() bool { return r == nil || len(r.rules) == 0 }

func (ru rule) matches(obj *unstructured.Unstructured) bool {
	gk := obj.GroupVersionKind().GroupKind()
	return gk == schema.GroupKind{Group: ru.group, Kind: ru.kind} &&
		(ru.name == "" || ru.name == obj.GetName()) && (ru.namespace == "" || ru.namespace == obj.GetNamespace())
}

// Paths are the ignored locations that exist in obj. Managed-fields
// managers are read from live (whose managedFields name them) and
// resolved in obj; live may be obj itself.
func (r *Rules) Paths(obj, live *unstructured.Unstructured) []Path {
	if r.Empty() || obj == nil {
		return nil
	}
	var out []Path
	for _, ru := range r.rules {
		if !ru.matches(obj) {
			continue
		}
		for _, p := range ru.pointers {
			if _, ok := get(obj.Object, p); ok {
				out = append(out, p)
			}
		}
		if len(ru.jq) > 0 {
			doc := jsonValue(obj.Object)
			for _, code := range ru.jq {
				// An expression from Git must not stall the agent.
				ctx, cancel := context.WithTimeout(context.Background(), jqTimeout)
				iter := code.RunWithContext(ctx, doc)
				for n := 0; n < maxJQPaths; n++ {
					v, ok := iter.Next()
					if !ok {
						break
					}
					if p, ok := v.([]any); ok {
						if _, exists := get(obj.Object, p); exists {
							out = append(out, Path(p))
						}
					}
				}
				cancel()
			}
		}
		if live != nil {
			for _, f := range live.GetManagedFields() {
				for _, m := range ru.managers {
					if f.Manager == m && f.FieldsV1 != nil {
						out = append(out, fieldPaths(obj.Object, f.FieldsV1.GetRawBytes())...)
					}
				}
			}
		}
	}
	return out
}

// Remove deletes the ignored locations from a copy of obj, for comparing.
func (r *Rules) Remove(obj, live *unstructured.Unstructured) *unstructured.Unstructured {
	c := obj.DeepCopy()
	paths := r.Paths(c, live)
	// Children before parents and higher list indexes first, so every
	// removal leaves the paths still to remove valid.
	slices.SortFunc(paths, comparePaths)
	for _, p := range slices.Backward(paths) {
		remove(c.Object, p)
	}
	return c
}

// Respect gives desired the live values of the ignored locations (or
// removes them where live has none), so applying it leaves them as they
// are: RespectIgnoreDifferences=true.
func (r *Rules) Respect(desired, live *unstructured.Unstructured) {
	if live == nil {
		return
	}
	for _, p := range r.Paths(live, live) {
		if v, ok := get(live.Object, p); ok {
			set(desired.Object, p, v)
		}
	}
	for _, p := range r.Paths(desired, live) {
		if _, ok := get(live.Object, p); !ok {
			remove(desired.Object, p)
		}
	}
}

// parsePointer reads an RFC 6901 JSON pointer.
func parsePointer(s string) (Path, error) {
	if s == "" {
		return nil, fmt.Errorf("empty pointer")
	}
	if !strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("%q does not start with /", s)
	}
	var p Path
	for _, tok := range strings.Split(s[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		p = append(p, tok)
	}
	return p, nil
}

// jsonValue converts an unstructured object to the plain JSON types gojq
// takes.
func jsonValue(v any) any {
	data, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

// step resolves one path element in v: a map key, or a list index (a
// pointer gives indexes as strings).
func step(v any, key any) (any, bool) {
	switch c := v.(type) {
	case map[string]any:
		k, ok := key.(string)
		if !ok {
			return nil, false
		}
		x, ok := c[k]
		return x, ok
	case []any:
		i, ok := index(key)
		if !ok || i < 0 || i >= len(c) {
			return nil, false
		}
		return c[i], true
	}
	return nil, false
}

func index(key any) (int, bool) {
	switch k := key.(type) {
	case int:
		return k, true
	case float64:
		return int(k), true
	case string:
		i, err := strconv.Atoi(k)
		return i, err == nil
	}
	return 0, false
}

func get(v any, p Path) (any, bool) {
	for _, k := range p {
		var ok bool
		if v, ok = step(v, k); !ok {
			return nil, false
		}
	}
	return v, true
}

func set(v any, p Path, value any) {
	if len(p) == 0 {
		return
	}
	parent, ok := get(v, p[:len(p)-1])
	if !ok {
		return
	}
	switch c := parent.(type) {
	case map[string]any:
		if k, ok := p[len(p)-1].(string); ok {
			c[k] = value
		}
	case []any:
		if i, ok := index(p[len(p)-1]); ok && i >= 0 && i < len(c) {
			c[i] = value
		}
	}
}

func remove(v any, p Path) {
	if len(p) == 0 {
		return
	}
	parent, ok := get(v, p[:len(p)-1])
	if !ok {
		return
	}
	switch c := parent.(type) {
	case map[string]any:
		if k, ok := p[len(p)-1].(string); ok {
			delete(c, k)
		}
	case []any:
		if i, ok := index(p[len(p)-1]); ok && i >= 0 && i < len(c) {
			set(v, p[:len(p)-1], slices.Delete(slices.Clone(c), i, i+1))
		}
	}
}

// comparePaths orders paths element by element, list indexes by number; a
// prefix sorts first.
func comparePaths(a, b Path) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ai, aIdx := index(a[i])
		bi, bIdx := index(b[i])
		if _, isStr := a[i].(string); isStr {
			aIdx = false
		}
		if _, isStr := b[i].(string); isStr {
			bIdx = false
		}
		switch {
		case aIdx && bIdx && ai != bi:
			return ai - bi
		case !aIdx || !bIdx:
			if c := strings.Compare(fmt.Sprint(a[i]), fmt.Sprint(b[i])); c != 0 {
				return c
			}
		}
	}
	return len(a) - len(b)
}

// fieldPaths turns a managedFields FieldsV1 set into the paths it names
// in obj: "f:" fields, and "k:" list items found by their keys; the
// leaves (fields owning no children) are returned.
func fieldPaths(obj map[string]any, raw []byte) []Path {
	var set map[string]any
	if json.Unmarshal(raw, &set) != nil {
		return nil
	}
	var out []Path
	var walk func(node map[string]any, v any, prefix Path)
	walk = func(node map[string]any, v any, prefix Path) {
		leaf := true
		for k, child := range node {
			sub, _ := child.(map[string]any)
			switch {
			case k == ".":
				continue
			case strings.HasPrefix(k, "f:"):
				leaf = false
				name := k[2:]
				next, ok := step(v, name)
				if !ok {
					continue
				}
				walk(sub, next, append(append(Path{}, prefix...), name))
			case strings.HasPrefix(k, "k:"):
				leaf = false
				var keys map[string]any
				if json.Unmarshal([]byte(k[2:]), &keys) != nil {
					continue
				}
				list, _ := v.([]any)
				for i, item := range list {
					if m, ok := item.(map[string]any); ok && matchesKeys(m, keys) {
						walk(sub, item, append(append(Path{}, prefix...), i))
					}
				}
			}
		}
		if leaf && len(prefix) > 0 {
			out = append(out, prefix)
		}
	}
	walk(set, obj, nil)
	return out
}

func matchesKeys(item, keys map[string]any) bool {
	for k, want := range keys {
		if fmt.Sprint(item[k]) != fmt.Sprint(want) {
			return false
		}
	}
	return true
}
