package appspec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"dario.cat/mergo"
	jsonpatch "github.com/evanphx/json-patch/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// Repos checks out repositories for git generators. The hub backs it with
// its Git mirrors: only configured repositories are read.
type Repos interface {
	Checkout(ctx context.Context, repoURL, revision string) (dir string, err error)
}

// Limits on what generators read and make: an ApplicationSet is outside
// input, and a matrix multiplies.
const (
	maxParamSets     = 10000
	maxGitFileSize   = 1 << 20
	maxGeneratorNest = 2
)

// generator makes the parameter sets of one generator.
type generator struct {
	set      *ApplicationSet
	clusters []Cluster
	repos    Repos
}

// params returns g's parameter sets. inherited, for the second generator
// of a matrix, are the first's parameters: g's own fields are templates
// over them, as in Argo CD.
func (x *generator) params(ctx context.Context, g Generator, inherited map[string]any) ([]map[string]any, error) {
	if inherited != nil {
		var err error
		if g, err = x.interpolate(g, inherited); err != nil {
			return nil, err
		}
	}
	var sets []map[string]any
	var err error
	switch {
	case g.List != nil:
		sets, err = x.list(g.List)
	case g.Clusters != nil:
		sets, err = x.clusterParams(g.Clusters)
	case g.Git != nil:
		sets, err = x.git(ctx, g.Git)
	case g.Matrix != nil:
		sets, err = x.matrix(ctx, g.Matrix)
	case g.Merge != nil:
		sets, err = x.merge(ctx, g.Merge)
	default:
		return nil, errors.New("no generator set")
	}
	if err != nil {
		return nil, err
	}
	if len(sets) > maxParamSets {
		return nil, fmt.Errorf("generates %d parameter sets, more than %d", len(sets), maxParamSets)
	}
	if g.Selector == nil {
		return sets, nil
	}
	selector, err := metav1.LabelSelectorAsSelector(g.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	var kept []map[string]any
	for _, p := range sets {
		if selector.Matches(labels.Set(flatten("", p))) {
			kept = append(kept, p)
		}
	}
	return kept, nil
}

// interpolate renders the strings of a generator with parameters.
func (x *generator) interpolate(g Generator, params map[string]any) (Generator, error) {
	data, err := json.Marshal(g)
	if err != nil {
		return g, err
	}
	var tree any
	if err := json.Unmarshal(data, &tree); err != nil {
		return g, err
	}
	rendered, err := x.set.substitute(tree, params)
	if err != nil {
		return g, err
	}
	if data, err = json.Marshal(rendered); err != nil {
		return g, err
	}
	var out Generator
	if err := strictDecode(data, &out); err != nil {
		return g, err
	}
	return out, nil
}

func (x *generator) list(l *ListGenerator) ([]map[string]any, error) {
	params := make([]map[string]any, 0, len(l.Elements))
	for i, raw := range l.Elements {
		var element map[string]any
		if err := json.Unmarshal(raw, &element); err != nil {
			return nil, fmt.Errorf("list.elements[%d]: must be an object: %w", i, err)
		}
		params = append(params, element)
	}
	return params, nil
}

func (x *generator) clusterParams(c *ClustersGenerator) ([]map[string]any, error) {
	selector, err := metav1.LabelSelectorAsSelector(&c.Selector)
	if err != nil {
		return nil, fmt.Errorf("clusters.selector: %w", err)
	}
	var params []map[string]any
	for _, cl := range x.clusters {
		if !selector.Matches(labels.Set(cl.Labels)) {
			continue
		}
		server := InClusterServer
		if len(cl.ServerURLs) > 0 {
			server = cl.ServerURLs[0]
		}
		p := map[string]any{
			"name":           cl.Name,
			"nameNormalized": cl.Name,
			"server":         server,
			"metadata": map[string]any{
				"labels":      stringMap(cl.Labels),
				"annotations": stringMap(cl.Annotations),
			},
		}
		values, err := x.values(c.Values, p)
		if err != nil {
			return nil, fmt.Errorf("clusters.values: %w", err)
		}
		p["values"] = values
		params = append(params, p)
	}
	return params, nil
}

// values renders a generator's values with its parameters, as Argo CD's
// appendTemplatedValues does: each may use the others' parameters, not
// the other values.
func (x *generator) values(values map[string]string, params map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		v, err := x.set.substitute(values[k], params)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// git is Argo CD's git generator over the repository's checkout.
func (x *generator) git(ctx context.Context, g *GitGenerator) ([]map[string]any, error) {
	if x.repos == nil {
		return nil, errors.New("git: no repositories to read")
	}
	dir, err := x.repos.Checkout(ctx, g.RepoURL, g.Revision)
	if err != nil {
		return nil, fmt.Errorf("git: %w", err)
	}
	var sets []map[string]any
	if len(g.Directories) > 0 {
		dirs, err := directories(dir)
		if err != nil {
			return nil, fmt.Errorf("git: %w", err)
		}
		for _, d := range dirs {
			if !selected(g.Directories, d, path.Match) {
				continue
			}
			p := x.pathParams(g.PathParamPrefix, d, "")
			if err := x.addValues(g, p); err != nil {
				return nil, err
			}
			sets = append(sets, p)
		}
		return sets, nil
	}
	files, err := gitFiles(dir, g.Files)
	if err != nil {
		return nil, fmt.Errorf("git: %w", err)
	}
	for _, f := range files {
		objects, err := readParamFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, fmt.Errorf("git: unable to process file %q from repository %q: %w", f, g.RepoURL, err)
		}
		for _, obj := range objects {
			p := obj
			if !x.set.Spec.GoTemplate {
				p = map[string]any{}
				for k, v := range flatten("", obj) {
					p[k] = v
				}
			}
			maps.Copy(p, x.pathParams(g.PathParamPrefix, path.Dir(f), path.Base(f)))
			if err := x.addValues(g, p); err != nil {
				return nil, err
			}
			sets = append(sets, p)
			if len(sets) > maxParamSets {
				return nil, fmt.Errorf("git: more than %d parameter sets", maxParamSets)
			}
		}
	}
	return sets, nil
}

func (x *generator) addValues(g *GitGenerator, p map[string]any) error {
	if len(g.Values) == 0 {
		return nil
	}
	values, err := x.values(g.Values, p)
	if err != nil {
		return fmt.Errorf("git.values: %w", err)
	}
	if x.set.Spec.GoTemplate {
		p["values"] = values
		return nil
	}
	for k, v := range values {
		p["values."+k] = v
	}
	return nil
}

// pathParams are a directory's (and a file's) path parameters, nested
// for Go templates ({{.path.basename}}) and flat otherwise
// ({{path.basename}}, {{path[0]}}), under the prefix when one is set.
func (x *generator) pathParams(prefix, dir, file string) map[string]any {
	if x.set.Spec.GoTemplate {
		p := map[string]any{
			"path":               dir,
			"basename":           path.Base(dir),
			"basenameNormalized": SanitizeName(path.Base(dir)),
			"segments":           toAny(strings.Split(dir, "/")),
		}
		if file != "" {
			p["filename"], p["filenameNormalized"] = file, SanitizeName(file)
		}
		if prefix != "" {
			return map[string]any{prefix: map[string]any{"path": p}}
		}
		return map[string]any{"path": p}
	}
	name := "path"
	if prefix != "" {
		name = prefix + ".path"
	}
	p := map[string]any{
		name:                         dir,
		name + ".basename":           path.Base(dir),
		name + ".basenameNormalized": SanitizeName(path.Base(dir)),
	}
	if file != "" {
		p[name+".filename"], p[name+".filenameNormalized"] = file, SanitizeName(file)
	}
	for i, segment := range strings.Split(dir, "/") {
		if segment != "" {
			p[name+"["+strconv.Itoa(i)+"]"] = segment
		}
	}
	return p
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

var invalidDNSChars = regexp.MustCompile(`[^-a-z0-9.]`)

// SanitizeName is Argo CD's: lower case, anything but [-a-z0-9.] as '-',
// at most 253 characters, no leading or trailing '-' or '.'.
func SanitizeName(name string) string {
	name = invalidDNSChars.ReplaceAllString(strings.ToLower(name), "-")
	if len(name) > 253 {
		name = name[:253]
	}
	return strings.Trim(name, "-.")
}

// selected applies include and exclude patterns, as Argo CD's git
// directory generator does: some include matches and no exclude does.
func selected(items []GitPathItem, p string, match func(pattern, name string) (bool, error)) bool {
	include, exclude := false, false
	for _, item := range items {
		ok, err := match(item.Path, p)
		if err != nil || !ok {
			continue
		}
		if item.Exclude {
			exclude = true
		} else {
			include = true
		}
	}
	return include && !exclude
}

// directories lists a checkout's directories, relative and slash
// separated, in lexical order, without the root and hidden ones.
func directories(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if p == root {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	return out, err
}

// gitFiles lists the checkout's files that the include patterns select
// and no exclude pattern does, sorted. Patterns are git pathspecs, as
// `git ls-files -- PATTERN` reads them in Argo CD: '*' and '?' match
// across '/', and a pattern without wildcards names a file or a
// directory's files.
func gitFiles(root string, items []GitPathItem) ([]string, error) {
	var all []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		all = append(all, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range all {
		if selected(items, f, pathspecMatch) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out, nil
}

// pathspecMatch matches a file against a git pathspec (fnmatch without
// FNM_PATHNAME).
func pathspecMatch(pattern, name string) (bool, error) {
	pattern = strings.TrimPrefix(pattern, "./")
	if !strings.ContainsAny(pattern, "*?[") {
		return name == pattern || strings.HasPrefix(name, strings.TrimSuffix(pattern, "/")+"/"), nil
	}
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		case '[':
			end := strings.IndexByte(pattern[i+1:], ']')
			if end < 0 {
				return false, fmt.Errorf("pattern %q: unclosed [", pattern)
			}
			class := pattern[i+1 : i+1+end]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			re.WriteString("[" + class + "]")
			i += end + 1
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("$")
	compiled, err := regexp.Compile(re.String())
	if err != nil {
		return false, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	return compiled.MatchString(name), nil
}

// readParamFile reads a git files generator's file: one object, or a list
// of objects, in YAML or JSON.
func readParamFile(file string) ([]map[string]any, error) {
	info, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if info.Size() > maxGitFileSize {
		return nil, fmt.Errorf("%d bytes, more than %d", info.Size(), maxGitFileSize)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return parseParamFile(data)
}

func parseParamFile(data []byte) ([]map[string]any, error) {
	var single map[string]any
	if err := yaml.Unmarshal(data, &single); err == nil {
		return []map[string]any{single}, nil
	}
	var list []map[string]any
	if err := yaml.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("unable to parse file: %w", err)
	}
	return list, nil
}

// matrix is every combination of its two generators' sets; the second
// sees the first's parameters.
func (x *generator) matrix(ctx context.Context, m *CombineGenerator) ([]map[string]any, error) {
	first, err := x.params(ctx, m.Generators[0], nil)
	if err != nil {
		return nil, fmt.Errorf("matrix.generators[0]: %w", err)
	}
	var out []map[string]any
	for _, a := range first {
		second, err := x.params(ctx, m.Generators[1], a)
		if err != nil {
			return nil, fmt.Errorf("matrix.generators[1]: %w", err)
		}
		for _, b := range second {
			combined, err := x.combine(a, b)
			if err != nil {
				return nil, fmt.Errorf("matrix: %w", err)
			}
			out = append(out, combined)
			if len(out) > maxParamSets {
				return nil, fmt.Errorf("matrix: more than %d parameter sets", maxParamSets)
			}
		}
	}
	return out, nil
}

// combine joins two parameter sets of a matrix: with Go templates the
// first wins a deep merge (mergo, as Argo CD merges them); otherwise a parameter both set differently is
// an error, as in Argo CD.
func (x *generator) combine(a, b map[string]any) (map[string]any, error) {
	if x.set.Spec.GoTemplate {
		out := map[string]any{}
		if err := mergo.Merge(&out, b, mergo.WithOverride); err != nil {
			return nil, err
		}
		if err := mergo.Merge(&out, a, mergo.WithOverride); err != nil {
			return nil, err
		}
		return out, nil
	}
	fa, fb := flatten("", a), flatten("", b)
	out := map[string]any{}
	for k, v := range fa {
		out[k] = v
	}
	for k, v := range fb {
		if prev, ok := fa[k]; ok && prev != v {
			return nil, fmt.Errorf("found duplicate key %s with different value, a: %s ,b: %s", k, prev, v)
		}
		out[k] = v
	}
	return out, nil
}

// merge overrides the first generator's sets with the others' sets that
// have the same values of mergeKeys.
func (x *generator) merge(ctx context.Context, m *CombineGenerator) ([]map[string]any, error) {
	var base []map[string]any
	var index map[string]int
	for i, g := range m.Generators {
		sets, err := x.params(ctx, g, nil)
		if err != nil {
			return nil, fmt.Errorf("merge.generators[%d]: %w", i, err)
		}
		if !x.set.Spec.GoTemplate {
			for j, p := range sets {
				flat := map[string]any{}
				for k, v := range flatten("", p) {
					flat[k] = v
				}
				sets[j] = flat
			}
		}
		keyed := map[string]int{}
		for j, p := range sets {
			key, err := mergeKey(m.MergeKeys, p)
			if err != nil {
				return nil, err
			}
			if _, dup := keyed[key]; dup {
				return nil, fmt.Errorf("merge.generators[%d]: the parameter sets are not unique by mergeKeys: %s", i, key)
			}
			keyed[key] = j
		}
		if i == 0 {
			base, index = sets, keyed
			continue
		}
		for key, j := range keyed {
			b, ok := index[key]
			if !ok {
				continue
			}
			if x.set.Spec.GoTemplate {
				if err := mergo.Merge(&base[b], sets[j], mergo.WithOverride); err != nil {
					return nil, err
				}
			} else {
				maps.Copy(base[b], sets[j])
			}
		}
	}
	return base, nil
}

func mergeKey(keys []string, p map[string]any) (string, error) {
	k := map[string]any{}
	for _, name := range keys {
		k[name] = p[name]
	}
	data, err := json.Marshal(k)
	return string(data), err
}

// generatorTemplate is the template a top-level generator overrides the
// ApplicationSet's with, if any.
func generatorTemplate(g Generator) json.RawMessage {
	switch {
	case g.List != nil:
		return g.List.Template
	case g.Clusters != nil:
		return g.Clusters.Template
	case g.Git != nil:
		return g.Git.Template
	case g.Matrix != nil:
		return g.Matrix.Template
	case g.Merge != nil:
		return g.Merge.Template
	}
	return nil
}

// applyTemplatePatch renders spec.templatePatch with params and merges it
// into a generated Application.
func (s *ApplicationSet) applyTemplatePatch(app []byte, params map[string]any) ([]byte, error) {
	rendered, err := s.goTemplate(s.Spec.TemplatePatch, params)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(rendered) == "" {
		return app, nil
	}
	patch, err := yaml.YAMLToJSON([]byte(rendered))
	if err != nil {
		return nil, fmt.Errorf("the rendered patch is not YAML: %w", err)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(patch), []byte("{")) {
		return nil, fmt.Errorf("the rendered patch is not an object: %.100s", rendered)
	}
	return jsonpatch.MergePatch(app, patch)
}
