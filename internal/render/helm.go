package render

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	chartpkg "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// renderHelm is `helm template` as Argo CD runs it: value files in order,
// then inline values, then parameters (--set / --set-string), then file
// parameters (--set-file); CRDs included unless skipCrds; hooks included.
func renderHelm(req Request, dir string) (*Result, error) {
	spec := req.Spec.GetHelm()
	fail := func(file, reason string, err error) error {
		return &Error{Path: req.Path, File: file, Reason: reason, Err: err}
	}
	chart, err := loader.Load(dir)
	if err != nil {
		return nil, fail(req.Path+"/Chart.yaml", "load chart", err)
	}
	if err := checkDependencies(chart); err != nil {
		return nil, fail(req.Path+"/Chart.yaml", "dependencies must be vendored in charts/", err)
	}
	res := &Result{}
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			res.Files = append(res.Files, relative(req.Root, p))
		}
		return err
	}); err != nil {
		return nil, fail("", "read chart", err)
	}

	values := map[string]any{}
	for _, vf := range spec.GetValueFiles() {
		if strings.Contains(vf, "://") {
			return nil, fail(vf, "value files from URLs are not supported", nil)
		}
		root, rel, ref, err := valueFilePath(req, vf)
		if err != nil {
			return nil, fail(vf, "value file", err)
		}
		p, err := resolve(root, rel)
		if err != nil {
			return nil, fail(vf, "value file", err)
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) && spec.GetIgnoreMissingValueFiles() {
			continue
		}
		source := relative(root, p)
		if ref != "" {
			source = "$" + ref + "/" + source
		}
		if err != nil {
			return nil, fail(source, "value file is missing", nil)
		}
		var fileValues map[string]any
		if err := yaml.Unmarshal(data, &fileValues); err != nil {
			return nil, fail(source, "value file is not YAML", err)
		}
		mergeValues(values, fileValues)
		if ref != "" {
			if res.RefFiles == nil {
				res.RefFiles = map[string][]string{}
			}
			res.RefFiles[ref] = append(res.RefFiles[ref], relative(root, p))
		} else {
			res.Files = append(res.Files, source)
		}
	}
	if inline := spec.GetValues(); strings.TrimSpace(inline) != "" {
		var inlineValues map[string]any
		if err := yaml.Unmarshal([]byte(inline), &inlineValues); err != nil {
			return nil, fail("", "helm.values is not YAML", err)
		}
		mergeValues(values, inlineValues)
	}
	for _, p := range spec.GetParameters() {
		set := p.GetName() + "=" + escapeSetValue(p.GetValue())
		parse := strvals.ParseInto
		if p.GetForceString() {
			parse = strvals.ParseIntoString
		}
		if err := parse(set, values); err != nil {
			return nil, fail("", fmt.Sprintf("helm.parameters %s", p.GetName()), err)
		}
	}
	for _, p := range spec.GetFileParameters() {
		fp, err := resolve(req.Root, filepath.ToSlash(filepath.Join(req.Path, p.GetValue())))
		if err != nil {
			return nil, fail(p.GetValue(), "helm.fileParameters", err)
		}
		data, err := os.ReadFile(fp)
		if err != nil {
			return nil, fail(relative(req.Root, fp), "helm.fileParameters file is missing", nil)
		}
		if err := strvals.ParseIntoString(p.GetName()+"="+escapeSetValue(string(data)), values); err != nil {
			return nil, fail(p.GetValue(), "helm.fileParameters "+p.GetName(), err)
		}
		res.Files = append(res.Files, relative(req.Root, fp))
	}

	release := firstNonEmpty(spec.GetReleaseName(), req.ReleaseName, chart.Name())
	namespace := firstNonEmpty(spec.GetNamespace(), req.Namespace, "default")
	manifests, err := helmTemplate(chart, values, release, namespace, firstNonEmpty(spec.GetKubeVersion(), req.KubeVersion),
		append(append([]string{}, req.APIVersions...), spec.GetApiVersions()...), !spec.GetSkipCrds())
	if err != nil {
		return nil, fail(templateFile(err, req.Path), "helm template", err)
	}
	for _, m := range manifests {
		source := filepath.ToSlash(filepath.Join(req.Path, strings.TrimPrefix(m.name, chart.Name()+"/")))
		objs, err := Decode([]byte(m.content))
		if err != nil {
			return nil, fail(source, "rendered manifest is invalid", err)
		}
		for _, o := range objs {
			res.Manifests = append(res.Manifests, Manifest{Object: o, Source: source})
		}
	}
	return res, nil
}

// valueFilePath says where a value file is: "$ref/path" in the ref
// source's directory (Argo CD's multi-source value files), anything else
// relative to the chart. It returns the root the path must stay in, the
// path relative to it, and the ref.
func valueFilePath(req Request, vf string) (root, rel, ref string, err error) {
	if !strings.HasPrefix(vf, "$") {
		return req.Root, filepath.ToSlash(filepath.Join(req.Path, vf)), "", nil
	}
	ref, rel, _ = strings.Cut(vf[1:], "/")
	dir, ok := req.Refs[ref]
	if !ok {
		return "", "", "", fmt.Errorf("$%s is not the ref of a source of this application", ref)
	}
	return dir, rel, ref, nil
}

// checkDependencies requires every dependency Chart.yaml names to be
// vendored in charts/, as `helm template` does; Argo CD's `helm dependency
// build` needs repository access an agent does not have.
func checkDependencies(ch *chartpkg.Chart) error {
	var missing []string
	for _, dep := range ch.Metadata.Dependencies {
		found := false
		for _, d := range ch.Dependencies() {
			if d.Name() == dep.Name {
				found = true
			}
		}
		if !found {
			missing = append(missing, dep.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("found in Chart.yaml, but missing in charts/ directory: %s", strings.Join(missing, ", "))
	}
	return nil
}

type helmManifest struct{ name, content string }

// helmTemplate renders a chart the way `helm template --include-crds` does
// (Helm's action.Install in client-only mode), with Helm's own engine,
// values and manifest sorting, but without linking Helm's release
// machinery: CRDs from crds/ first, then the templates in install order,
// then the hooks.
func helmTemplate(chart *chartpkg.Chart, values map[string]any, release, namespace, kubeVersion string, apiVersions []string, includeCRDs bool) ([]helmManifest, error) {
	if chart.Metadata.Type == "library" {
		return nil, fmt.Errorf("%s is a library chart, which cannot be installed", chart.Name())
	}
	if err := chartutil.ProcessDependenciesWithMerge(chart, values); err != nil {
		return nil, err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	if kubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(kubeVersion)
		if err != nil {
			return nil, fmt.Errorf("kubeVersion: %w", err)
		}
		caps.KubeVersion = *kv
	}
	caps.APIVersions = append(caps.APIVersions, apiVersions...)
	if c := chart.Metadata.KubeVersion; c != "" && !chartutil.IsCompatibleRange(c, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", c, caps.KubeVersion.String())
	}
	options := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	renderValues, err := chartutil.ToRenderValuesWithSchemaValidation(chart, values, options, caps, false)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(chart, renderValues)
	if err != nil {
		return nil, err
	}
	size := 0
	for name, content := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
			continue
		}
		size += len(content)
	}
	if size > maxRenderSize { // before sorting, which costs seconds at this size
		return nil, fmt.Errorf("chart %s rendered more than %d MiB", chart.Name(), maxRenderSize>>20)
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	var out []helmManifest
	if includeCRDs {
		for _, crd := range chart.CRDObjects() {
			out = append(out, helmManifest{name: crd.Filename, content: string(crd.File.Data)})
		}
	}
	for _, m := range manifests {
		out = append(out, helmManifest{name: m.Name, content: m.Content})
	}
	for _, h := range hooks {
		out = append(out, helmManifest{name: h.Path, content: h.Manifest})
	}
	return out, nil
}

// mergeValues deep-merges src into dst, src winning, as Helm coalesces value
// files.
func mergeValues(dst, src map[string]any) {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if d, ok := dst[k].(map[string]any); ok {
				mergeValues(d, sub)
				continue
			}
			dst[k] = maps.Clone(sub)
			continue
		}
		dst[k] = v
	}
}

// escapeSetValue escapes what --set would read as syntax in a value, as
// Argo CD does before passing parameters to Helm.
func escapeSetValue(v string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(v)
}

var templateErrorFile = regexp.MustCompile(`(?:template: |at \()[^/]+/([^:]+):`)

// templateFile picks the template named in a Helm error, for the error's
// File field.
func templateFile(err error, appPath string) string {
	if m := templateErrorFile.FindStringSubmatch(err.Error()); m != nil {
		return appPath + "/" + m[1]
	}
	return ""
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
