package appspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Expand generates the Applications of an ApplicationSet for the registered
// clusters, as Argo CD's list and cluster generators do: one parameter set
// per list element or matching cluster, substituted into spec.template with
// Go templates (goTemplate: true) or Argo CD's {{param}} syntax.
func (s *ApplicationSet) Expand(clusters []Cluster) ([]*Application, error) {
	fail := func(field string, err error) error {
		return &Error{Kind: KindApplicationSet, Name: s.Metadata.Name, Field: field, Reason: err.Error()}
	}
	var template any
	if err := json.Unmarshal(s.Spec.Template, &template); err != nil {
		return nil, fail("spec.template", err)
	}
	var apps []*Application
	for i, g := range s.Spec.Generators {
		params, err := s.generatorParams(g, clusters)
		if err != nil {
			return nil, fail(fmt.Sprintf("spec.generators[%d]", i), err)
		}
		for _, p := range params {
			expanded, err := s.substitute(template, p)
			if err != nil {
				return nil, fail("spec.template", err)
			}
			data, err := json.Marshal(expanded)
			if err != nil {
				return nil, fail("spec.template", err)
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
			apps = append(apps, &app)
		}
	}
	return apps, nil
}

func (s *ApplicationSet) generatorParams(g Generator, clusters []Cluster) ([]map[string]any, error) {
	switch {
	case g.List != nil:
		params := make([]map[string]any, 0, len(g.List.Elements))
		for i, raw := range g.List.Elements {
			var element map[string]any
			if err := json.Unmarshal(raw, &element); err != nil {
				return nil, fmt.Errorf("list.elements[%d]: must be an object: %w", i, err)
			}
			params = append(params, element)
		}
		return params, nil
	case g.Clusters != nil:
		selector, err := metav1.LabelSelectorAsSelector(&g.Clusters.Selector)
		if err != nil {
			return nil, fmt.Errorf("clusters.selector: %w", err)
		}
		var params []map[string]any
		for _, c := range clusters {
			if !selector.Matches(labels.Set(c.Labels)) {
				continue
			}
			params = append(params, map[string]any{
				"name":           c.Name,
				"nameNormalized": c.Name,
				"server":         InClusterServer,
				"metadata": map[string]any{
					"labels":      stringMap(c.Labels),
					"annotations": stringMap(c.Annotations),
				},
				"values": stringMap(g.Clusters.Values),
			})
		}
		return params, nil
	}
	return nil, fmt.Errorf("no generator set")
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
func (s *ApplicationSet) goTemplate(text string, params map[string]any) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	tmpl, err := template.New("").Funcs(funcs).Option(s.Spec.GoTemplateOptions...).Parse(text)
	if err != nil {
		return "", fmt.Errorf("template %q: %w", text, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, params); err != nil {
		return "", fmt.Errorf("template %q: %w", text, err)
	}
	return out.String(), nil
}

var fastTemplateParam = regexp.MustCompile(`\{\{\s*([-\w.]+)\s*\}\}`)

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
