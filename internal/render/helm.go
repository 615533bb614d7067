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

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
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
	if err := action.CheckDependencies(chart, chart.Metadata.Dependencies); err != nil {
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
		p, err := resolve(req.Root, filepath.ToSlash(filepath.Join(req.Path, vf)))
		if err != nil {
			return nil, fail(vf, "value file", err)
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) && spec.GetIgnoreMissingValueFiles() {
			continue
		}
		source := relative(req.Root, p)
		if err != nil {
			return nil, fail(source, "value file is missing", nil)
		}
		var fileValues map[string]any
		if err := yaml.Unmarshal(data, &fileValues); err != nil {
			return nil, fail(source, "value file is not YAML", err)
		}
		mergeValues(values, fileValues)
		res.Files = append(res.Files, source)
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

	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.IncludeCRDs = !spec.GetSkipCrds()
	install.ReleaseName = firstNonEmpty(spec.GetReleaseName(), req.ReleaseName, chart.Name())
	install.Namespace = firstNonEmpty(spec.GetNamespace(), req.Namespace, "default")
	kubeVersion := firstNonEmpty(spec.GetKubeVersion(), req.KubeVersion)
	if kubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(kubeVersion)
		if err != nil {
			return nil, fail("", "kubeVersion", err)
		}
		install.KubeVersion = kv
	}
	install.APIVersions = append(chartutil.VersionSet{}, req.APIVersions...)
	install.APIVersions = append(install.APIVersions, spec.GetApiVersions()...)
	rel, err := install.Run(chart, values)
	if err != nil {
		return nil, fail(templateFile(err, req.Path), "helm template", err)
	}

	add := func(source, manifest string) error {
		objs, err := Decode([]byte(manifest))
		if err != nil {
			return fail(source, "rendered manifest is invalid", err)
		}
		for _, o := range objs {
			res.Manifests = append(res.Manifests, Manifest{Object: o, Source: source})
		}
		return nil
	}
	manifests := releaseutil.SplitManifests(rel.Manifest)
	for _, key := range sortedKeys(manifests) {
		m := manifests[key]
		if err := add(chartSource(req.Path, m), m); err != nil {
			return nil, err
		}
	}
	for _, h := range rel.Hooks {
		if err := add(filepath.ToSlash(filepath.Join(req.Path, strings.TrimPrefix(h.Path, chart.Name()+"/"))), h.Manifest); err != nil {
			return nil, err
		}
	}
	return res, nil
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

var sourceComment = regexp.MustCompile(`(?m)^# Source: [^/]+/(.+)$`)

// chartSource reads the "# Source: chart/templates/x.yaml" line Helm writes.
func chartSource(appPath, manifest string) string {
	if m := sourceComment.FindStringSubmatch(manifest); m != nil {
		return appPath + "/" + m[1]
	}
	return appPath
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

func sortedKeys(m map[string]string) []string {
	// SplitManifests keys are "manifest-N"; order them by N so objects keep
	// the chart's order.
	keys := make([]string, len(m))
	for i := range keys {
		keys[i] = fmt.Sprintf("manifest-%d", i)
	}
	return keys
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
