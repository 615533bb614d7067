package render

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/kio"
)

// Kustomize fetches what a kustomization names when it is not a path in the
// tree: an http(s) URL wherever it expects a file (with http.Get), a git
// address wherever it expects a directory (with git clone). What it fetches
// is neither in the artifact nor under its signature, and a fetch from the
// hub is a server-side request forgery. krusty.Options has no switch against
// it: the loader builds its own http.Client and execs git, taking neither
// from the caller, and LoadRestrictionsRootOnly covers local files only. So
// checkLocal reads every kustomization a build reaches before kustomize runs,
// decoded with kustomize's own types as kustomize decodes it, and refuses
// every reference kustomize would fetch.

// remoteRef matches a reference kustomize fetches rather than reads from the
// tree, by kustomize's own tests (which live in its internal packages): a URL
// with a scheme (http and https files; http, https, ssh and file git
// repositories; a git:: prefix is ignored), an scp-style user@host:repo, or
// github.com/org/repo. Any scheme and any user@ prefix count, which refuses a
// little more than kustomize fetches, never less.
var remoteRef = regexp.MustCompile(`(?i)^\s*(git::)?([a-z][a-z0-9+.-]*://|github\.com[/:]|[a-z][a-z0-9-]*@)`)

// pluginPathKeys are the fields of kustomize's builtin generator and
// transformer configurations that name a file to load: path
// (PatchTransformer, PatchJson6902Transformer, each of
// ReplacementTransformer's replacements), paths
// (PatchStrategicMergeTransformer), targetFilePath (ValueAddTransformer),
// files, envs and env (ConfigMapGenerator, SecretGenerator). They are looked
// for at any depth and in any case, as kustomize's JSON decoding matches them.
var pluginPathKeys = []string{"path", "paths", "targetFilePath", "files", "envs", "env"}

// reference is one entry of a kustomization that names something to load.
type reference struct{ field, value string }

func (r reference) remote() error {
	return fmt.Errorf("%s %q is not in the repository: kustomize would fetch it, and renders never touch the network; vendor it into the repository", r.field, r.value)
}

// localCheck walks the kustomizations one build reaches.
type localCheck struct {
	req  Request
	seen map[string]bool // kustomization directories already checked
	// fs reads kustomization files: the disk, with the Application's
	// overrides applied to its own.
	fs filesys.FileSystem
}

// checkLocal refuses a build of the kustomization at dir that would fetch
// anything: a remote resource, base, component, patch, generator source or
// plugin configuration, a kustomization outside the repository, or Helm
// charts (kustomize would run helm, which pulls them). The *Error names the
// kustomization file and the reference.
func checkLocal(req Request, dir string, fs filesys.FileSystem) error {
	c := &localCheck{req: req, fs: fs, seen: map[string]bool{}}
	return c.kustomization(dir)
}

// kustomization checks the kustomization file in dir and those it reaches. A
// missing or malformed file is left to kustomize, which fails on it before it
// loads anything it names.
func (c *localCheck) kustomization(dir string) error {
	if c.seen[dir] {
		return nil
	}
	c.seen[dir] = true
	for _, name := range konfig.RecognizedKustomizationFileNames() {
		file := filepath.Join(dir, name)
		data, err := c.fs.ReadFile(file)
		if err != nil {
			continue
		}
		var k types.Kustomization
		if k.Unmarshal(data) != nil {
			continue
		}
		k.FixKustomization() // bases into resources, env into envs, helmChartInflationGenerator into helmCharts
		if err := c.check(dir, &k); err != nil {
			if _, ok := err.(*Error); ok {
				return err // from a kustomization this one reaches
			}
			return &Error{Path: c.req.Path, File: relative(c.req.Root, file), Reason: err.Error()}
		}
	}
	return nil
}

func (c *localCheck) check(dir string, k *types.Kustomization) error {
	if len(k.HelmCharts) > 0 {
		return fmt.Errorf("helmCharts %q: kustomize would run helm, which pulls the chart; render the chart as a Helm source instead", k.HelmCharts[0].Name)
	}
	for _, ref := range fileRefs(k) {
		if remoteRef.MatchString(ref.value) {
			return ref.remote()
		}
	}
	for _, ref := range append(refs("resources", k.Resources), refs("components", k.Components)...) {
		if remoteRef.MatchString(ref.value) {
			return ref.remote()
		}
		p, info, err := c.local(dir, ref.value)
		if err != nil {
			return fmt.Errorf("%s %q: %w", ref.field, ref.value, err)
		}
		if info != nil && info.IsDir() {
			if err := c.kustomization(p); err != nil {
				return err
			}
		}
	}
	plugins := slices.Concat(refs("generators", k.Generators), refs("transformers", k.Transformers), refs("validators", k.Validators))
	for _, ref := range plugins {
		if err := c.plugin(dir, ref); err != nil {
			return err
		}
	}
	return nil
}

// fileRefs lists the entries kustomize loads as files.
func fileRefs(k *types.Kustomization) []reference {
	out := slices.Concat(refs("crds", k.Crds), refs("configurations", k.Configurations), refs("openapi.path", []string{k.OpenAPI["path"]}))
	// Deprecated fields still load files, as kustomize reads them.
	//lint:ignore SA1019 users' kustomizations still use it
	for _, p := range k.PatchesStrategicMerge {
		out = append(out, reference{"patchesStrategicMerge", string(p)})
	}
	//lint:ignore SA1019 users' kustomizations still use it
	for _, p := range slices.Concat(k.Patches, k.PatchesJson6902) {
		out = append(out, reference{"patches.path", p.Path})
	}
	for _, r := range k.Replacements {
		out = append(out, reference{"replacements.path", r.Path})
	}
	for _, g := range k.ConfigMapGenerator {
		out = append(out, generatorRefs("configMapGenerator", g.KvPairSources)...)
	}
	for _, g := range k.SecretGenerator {
		out = append(out, generatorRefs("secretGenerator", g.KvPairSources)...)
	}
	return out
}

func generatorRefs(field string, s types.KvPairSources) []reference {
	var out []reference
	for _, f := range s.FileSources {
		out = append(out, reference{field + ".files", fileSource(f)})
	}
	return append(out, refs(field+".envs", s.EnvSources)...)
}

// fileSource is the path of a generator's file source, "path" or "key=path".
func fileSource(s string) string {
	if _, p, ok := strings.Cut(s, "="); ok {
		return p
	}
	return s
}

func refs(field string, values []string) []reference {
	out := make([]reference, 0, len(values))
	for _, v := range values {
		out = append(out, reference{field, v})
	}
	return out
}

// local resolves ref against the kustomization directory dir. It returns no
// info when nothing is there (kustomize reports a missing path, refuses an
// absolute one, or ref is an inline configuration), and an error when ref
// leaves the repository.
func (c *localCheck) local(dir, ref string) (string, os.FileInfo, error) {
	if filepath.IsAbs(ref) {
		return "", nil, nil
	}
	p := filepath.Join(dir, filepath.FromSlash(ref))
	info, err := os.Stat(p)
	if err != nil {
		return "", nil, nil
	}
	if _, err := resolve(c.req.Root, relative(c.req.Root, p)); err != nil {
		return "", nil, err
	}
	return p, info, nil
}

// plugin checks a generators, transformers or validators entry: an inline
// configuration or a file of them. A directory there is a kustomization whose
// output becomes the configurations, which cannot be checked before it is
// built, so it is refused.
func (c *localCheck) plugin(dir string, ref reference) error {
	if remoteRef.MatchString(ref.value) {
		return ref.remote()
	}
	where, config := ref.field+" (inline)", []byte(ref.value)
	p, info, err := c.local(dir, ref.value)
	switch {
	case err != nil:
		return fmt.Errorf("%s %q: %w", ref.field, ref.value, err)
	case info != nil && info.IsDir():
		return fmt.Errorf("%s %q is a kustomization: plugin configurations must be inline or files, so that they can be checked for remote references", ref.field, ref.value)
	case info != nil:
		where = fmt.Sprintf("%s %q", ref.field, ref.value)
		if config, err = os.ReadFile(p); err != nil {
			return nil // kustomize reports it
		}
	}
	nodes, err := kio.FromBytes(config)
	if err != nil {
		return nil // not YAML: kustomize fails on it too, before loading anything
	}
	for _, n := range nodes {
		m, err := n.Map()
		if err != nil {
			continue
		}
		if err := checkPluginConfig(m); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

// checkPluginConfig refuses a plugin configuration with a remote file in one
// of pluginPathKeys, or one that would run helm.
func checkPluginConfig(v any) error {
	switch t := v.(type) {
	case map[string]any:
		if t["kind"] == "HelmChartInflationGenerator" {
			return errors.New("HelmChartInflationGenerator would run helm, which pulls the chart; render the chart as a Helm source instead")
		}
		for key, e := range t {
			if slices.ContainsFunc(pluginPathKeys, func(k string) bool { return strings.EqualFold(k, key) }) {
				if err := checkPluginPaths(key, e); err != nil {
					return err
				}
			}
			if err := checkPluginConfig(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range t {
			if err := checkPluginConfig(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkPluginPaths(key string, v any) error {
	values, _ := v.([]any)
	if s, ok := v.(string); ok {
		values = []any{s}
	}
	for _, e := range values {
		s, _ := e.(string)
		if strings.EqualFold(key, "files") {
			s = fileSource(s)
		}
		if remoteRef.MatchString(s) {
			return reference{key, s}.remote()
		}
	}
	return nil
}
