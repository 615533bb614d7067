package appspec

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"dario.cat/mergo"
	"github.com/Masterminds/sprig/v3"
)

// Expand generates the Applications of an ApplicationSet, as Argo CD's
// list, cluster, git, matrix and merge generators do: one parameter set
// per list element, matching cluster, selected directory or object of a
// selected file, substituted into spec.template (over a generator's own
// template) with Go templates (goTemplate: true) or Argo CD's {{param}}
// syntax, then spec.templatePatch applied. repos reads the repositories
// of git generators. Each Application names s as its GeneratedBy.
func (s *ApplicationSet) Expand(ctx context.Context, clusters []Cluster, repos Repos) ([]*Application, error) {
	fail := func(field string, err error) error {
		return &Error{Kind: KindApplicationSet, Name: s.Metadata.Name, Field: field, Reason: err.Error()}
	}
	x := &generator{set: s, clusters: clusters, repos: repos}
	var apps []*Application
	for i, g := range s.Spec.Generators {
		field := fmt.Sprintf("spec.generators[%d]", i)
		params, err := x.params(ctx, g, nil)
		if err != nil {
			return nil, fail(field, err)
		}
		template, err := mergedTemplate(s.Spec.Template, generatorTemplate(g))
		if err != nil {
			return nil, fail(field+".template", err)
		}
		for _, p := range params {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			expanded, err := s.substitute(template, p)
			if err != nil {
				return nil, fail("spec.template", err)
			}
			data, err := json.Marshal(expanded)
			if err != nil {
				return nil, fail("spec.template", err)
			}
			if s.Spec.TemplatePatch != "" {
				if data, err = s.applyTemplatePatch(data, p); err != nil {
					return nil, fail("spec.templatePatch", err)
				}
			}
			var app Application
			if err := strictDecode(data, &app); err != nil {
				return nil, fail("spec.template", err)
			}
			app.APIVersion, app.Kind = Group+"/v1alpha1", KindApplication
			if app.Metadata.Namespace == "" {
				app.Metadata.Namespace = s.Metadata.Namespace
			}
			if err := app.Validate(); err != nil {
				return nil, fmt.Errorf("ApplicationSet %q generated an invalid Application: %w", s.Metadata.Name, err)
			}
			if app.Waves, err = annotatedWaves(KindApplication, app.Metadata); err != nil {
				return nil, fmt.Errorf("ApplicationSet %q generated an invalid Application: %w", s.Metadata.Name, err)
			}
			app.GeneratedBy = s
			app.Warnings = append(slices.Clone(s.Warnings), fieldWarnings(unusedFields(data, applicationFields))...)
			apps = append(apps, &app)
		}
	}
	return apps, nil
}

// mergedTemplate is the ApplicationSet's template under a generator's own
// template: the generator's fields win, the set's fill what it leaves
// empty, as Argo CD's mergo.Merge does.
func mergedTemplate(base, override json.RawMessage) (any, error) {
	var tree map[string]any
	if err := json.Unmarshal(base, &tree); err != nil {
		return nil, err
	}
	if len(override) == 0 || string(override) == "null" {
		return tree, nil
	}
	var over map[string]any
	if err := json.Unmarshal(override, &over); err != nil {
		return nil, err
	}
	if err := mergo.Merge(&over, tree); err != nil {
		return nil, err
	}
	return over, nil
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// substitute walks the template and expands every string in it.
func (s *ApplicationSet) substitute(node any, params map[string]any) (any, error) {
	switch n := node.(type) {
	case string:
		if s.Spec.GoTemplate {
			return s.goTemplate(n, params)
		}
		return fastTemplate(n, flatten("", params)), nil
	case map[string]any:
		out := make(map[string]any, len(n))
		for _, k := range slices.Sorted(maps.Keys(n)) {
			v, err := s.substitute(n[k], params)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case []any:
		out := make([]any, len(n))
		for i, v := range n {
			e, err := s.substitute(v, params)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	}
	return node, nil
}

// goTemplate renders one string with text/template and Sprig, minus the
// functions that read the hub's environment, as Argo CD does.
func (s *ApplicationSet) goTemplate(text string, params map[string]any) (out string, err error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = "", fmt.Errorf("template %q failed: %v", text, p)
		}
	}()
	tmpl, err := template.New("").Funcs(templateFuncs).Option(s.Spec.GoTemplateOptions...).Parse(text)
	if err != nil {
		return "", fmt.Errorf("template %q: %w", text, err)
	}
	w := &limitedBuffer{max: maxTemplateOutput}
	if err := tmpl.Execute(w, params); err != nil {
		return "", fmt.Errorf("template %q: %w", text, err)
	}
	return w.String(), nil
}

// maxTemplateOutput bounds what one template string renders to, and what
// one function call inside it may build.
const maxTemplateOutput = 1 << 20

// templateFuncs are Sprig's functions as Argo CD offers them (without
// those that read the hub's environment), with those that build
// something as large as their argument says bounded.
var templateFuncs = func() template.FuncMap {
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["repeat"] = func(count int, str string) (string, error) {
		if count < 0 || len(str)*count > maxTemplateOutput {
			return "", fmt.Errorf("repeat: %d times %d bytes is over the limit", count, len(str))
		}
		return strings.Repeat(str, count), nil
	}
	until := funcs["untilStep"].(func(int, int, int) []int)
	funcs["untilStep"] = func(start, stop, step int) ([]int, error) {
		if step == 0 || (stop-start)/step > maxTemplateOutput/8 {
			return nil, fmt.Errorf("untilStep: too many elements")
		}
		return until(start, stop, step), nil
	}
	funcs["until"] = func(count int) ([]int, error) {
		if count > maxTemplateOutput/8 || -count > maxTemplateOutput/8 {
			return nil, fmt.Errorf("until: too many elements")
		}
		return until(0, count, map[bool]int{true: 1, false: -1}[count >= 0]), nil
	}
	return funcs
}()

// limitedBuffer fails a write that passes max.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, fmt.Errorf("the template renders more than %d bytes", b.max)
	}
	return b.Buffer.Write(p)
}

var fastTemplateParam = regexp.MustCompile(`\{\{\s*([^{}\s]+)\s*\}\}`)

// fastTemplate replaces {{ param }} with flattened parameters; unknown
// parameters stay as written, as in Argo CD.
func fastTemplate(text string, params map[string]string) string {
	return fastTemplateParam.ReplaceAllStringFunc(text, func(m string) string {
		key := fastTemplateParam.FindStringSubmatch(m)[1]
		if v, ok := params[key]; ok {
			return v
		}
		return m
	})
}

// flatten turns nested parameters into Argo CD's dotted names
// ("metadata.labels.env").
func flatten(prefix string, params map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range params {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		switch val := v.(type) {
		case map[string]any:
			maps.Copy(out, flatten(key, val))
		case string:
			out[key] = val
		default:
			data, _ := json.Marshal(val)
			out[key] = string(data)
		}
	}
	return out
}
