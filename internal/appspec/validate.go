package appspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-dev/flotilla/internal/ignore"
)

// namePattern keeps application and cluster names usable as one token of a
// NATS subject and KV key: a DNS label.
var namePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ValidName reports whether name can name a cluster: a DNS label.
func ValidName(name string) bool { return namePattern.MatchString(name) }

// appNamePattern is a DNS-1123 subdomain: what Argo CD accepts as an
// Application's name.
var appNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ValidAppName reports whether name can name an application: a DNS-1123
// subdomain of at most 253 characters.
func ValidAppName(name string) bool { return len(name) <= 253 && appNamePattern.MatchString(name) }

// KnownSyncOptions are the Argo CD sync options Flotilla understands, with
// the values each accepts.
var KnownSyncOptions = map[string][]string{
	"CreateNamespace":             {"true", "false"},
	"ServerSideApply":             {"true", "false"},
	"PruneLast":                   {"true", "false"},
	"ApplyOutOfSyncOnly":          {"true", "false"},
	"Replace":                     {"true", "false"},
	"Prune":                       {"true", "false", "confirm"},
	"Delete":                      {"true", "false", "confirm"},
	"RespectIgnoreDifferences":    {"true", "false"},
	"FailOnSharedResource":        {"true", "false"},
	"Validate":                    {"true", "false"},
	"PrunePropagationPolicy":      {"foreground", "background", "orphan"},
	"SkipDryRunOnMissingResource": {"true", "false"},
}

// Validate checks an Application for what Flotilla needs and supports. It
// returns an *Error naming the first bad field.
func (a *Application) Validate() error {
	fail := func(field, format string, args ...any) error {
		return &Error{Kind: KindApplication, Name: a.Metadata.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if a.Metadata.Name == "" {
		return fail("metadata.name", "is required")
	}
	if !ValidAppName(a.Metadata.Name) {
		return fail("metadata.name", "%q is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253)", a.Metadata.Name)
	}
	sources := a.AppSources()
	if len(sources) == 0 {
		return fail("spec.source", "is required")
	}
	refs := map[string]bool{}
	for i, src := range sources {
		if src.Ref == "" {
			continue
		}
		field := a.SourceField(i) + ".ref"
		switch {
		case src.Chart != "":
			return fail(field, "a source with a ref cannot have a chart (Argo CD reads value files only from Git)")
		case refs[src.Ref]:
			return fail(field, "%q names two sources", src.Ref)
		case !refPattern.MatchString(src.Ref):
			return fail(field, "%q: want letters, digits, '-' and '_'", src.Ref)
		}
		refs[src.Ref] = true
	}
	for i, src := range sources {
		if err := validateSource(a.SourceField(i), src, refs); err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Kind, e.Name = KindApplication, a.Metadata.Name
			}
			return err
		}
	}
	d := a.Spec.Destination
	switch {
	case d.Name != "" && d.Server != "":
		return fail("spec.destination", "set name or server, not both")
	case d.Name == "" && d.Server == "":
		return fail("spec.destination", "set name (a cluster) or server (%s)", InClusterServer)
	case d.Server != "" && !strings.HasPrefix(d.Server, "https://") && !strings.HasPrefix(d.Server, "http://"):
		return fail("spec.destination.server", "%q is not an API server URL", d.Server)
	}
	if sel := a.Metadata.Annotations[ClustersAnnotation]; sel != "" {
		if _, err := ParseSelector(sel); err != nil {
			return fail("metadata.annotations["+ClustersAnnotation+"]", "%v", err)
		}
	}
	if p := a.Spec.SyncPolicy; p != nil {
		for i, opt := range p.SyncOptions {
			if err := validateSyncOption(opt); err != nil {
				return fail(fmt.Sprintf("spec.syncPolicy.syncOptions[%d]", i), "%v", err)
			}
		}
		if r := p.Retry; r != nil && r.Backoff != nil {
			if _, err := ParseArgoDuration(r.Backoff.Duration); r.Backoff.Duration != "" && err != nil {
				return fail("spec.syncPolicy.retry.backoff.duration", "%v", err)
			}
			if _, err := ParseArgoDuration(r.Backoff.MaxDuration); r.Backoff.MaxDuration != "" && err != nil {
				return fail("spec.syncPolicy.retry.backoff.maxDuration", "%v", err)
			}
			if f := r.Backoff.Factor; f != nil && *f < 1 {
				return fail("spec.syncPolicy.retry.backoff.factor", "must be at least 1, got %d", *f)
			}
		}
	}
	if _, err := ignore.Compile(a.IgnoreDifferences()); err != nil {
		var fe *ignore.FieldError
		if errors.As(err, &fe) {
			return fail(fe.Field, "%v", fe.Err)
		}
		return err
	}
	return nil
}

var refPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// validateSource checks one source; field is its path ("spec.source",
// "spec.sources[1]").
func validateSource(field string, src *ApplicationSource, refs map[string]bool) error {
	fail := func(sub, format string, args ...any) error {
		return &Error{Field: field + sub, Reason: fmt.Sprintf(format, args...)}
	}
	if src.RepoURL == "" {
		return fail(".repoURL", "is required")
	}
	if len(src.Plugin) > 0 && string(src.Plugin) != "{}" && string(src.Plugin) != "null" {
		return fail(".plugin", "config management plugins are not supported (plugin %s)", pluginName(src.Plugin))
	}
	if d := src.Directory; d != nil && d.Jsonnet != nil {
		for i, v := range d.Jsonnet.TLAs {
			if v.Name == "" {
				return fail(fmt.Sprintf(".directory.jsonnet.tlas[%d].name", i), "is required")
			}
		}
		for i, v := range d.Jsonnet.ExtVars {
			if v.Name == "" {
				return fail(fmt.Sprintf(".directory.jsonnet.extVars[%d].name", i), "is required")
			}
		}
	}
	if n := countSet(src.Helm != nil, src.Kustomize != nil, src.Directory != nil); n > 1 {
		return fail("", "set at most one of helm, kustomize and directory")
	}
	if src.IsChart() && (src.Kustomize != nil || src.Directory != nil) {
		return fail("", "a chart renders with Helm: kustomize and directory do not apply")
	}
	if src.ValuesOnly() && (src.Helm != nil || src.Kustomize != nil || src.Directory != nil) {
		return fail("", "a ref source without a path is not rendered: helm, kustomize and directory do not apply")
	}
	if src.Helm != nil {
		for i, p := range src.Helm.Parameters {
			if p.Name == "" {
				return fail(fmt.Sprintf(".helm.parameters[%d].name", i), "is required")
			}
		}
		for i, p := range src.Helm.FileParameters {
			if p.Name == "" || p.Path == "" {
				return fail(fmt.Sprintf(".helm.fileParameters[%d]", i), "name and path are required")
			}
		}
		for i, vf := range src.Helm.ValueFiles {
			if ref, _, ok := strings.Cut(strings.TrimPrefix(vf, "$"), "/"); strings.HasPrefix(vf, "$") && (!ok || !refs[ref]) {
				return fail(fmt.Sprintf(".helm.valueFiles[%d]", i), "%q: $%s is not the ref of a source of this application", vf, ref)
			}
		}
	}
	return nil
}

// pluginName is the plugin's name, or "without a name".
func pluginName(raw json.RawMessage) string {
	var p struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &p) == nil && p.Name != "" {
		return strconv.Quote(p.Name)
	}
	return "without a name"
}

func validateSyncOption(opt string) error {
	key, value, ok := strings.Cut(opt, "=")
	if !ok {
		return fmt.Errorf("%q is not Key=Value", opt)
	}
	allowed, known := KnownSyncOptions[key]
	if !known {
		return fmt.Errorf("unknown sync option %q", key)
	}
	for _, v := range allowed {
		if strings.EqualFold(v, value) {
			return nil
		}
	}
	return fmt.Errorf("%s=%s: value must be one of %s", key, value, strings.Join(allowed, ", "))
}

// ParseArgoDuration reads a retry duration as Argo CD does: a Go duration
// ("5s", "3m") or a bare number of seconds ("5").
func ParseArgoDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
}

// ParseSelector parses a label selector in kubectl's syntax
// ("env=production,region in (eu,us)").
func ParseSelector(s string) (labels.Selector, error) {
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid label selector %q: %w", s, err)
	}
	return sel, nil
}

// goTemplateOptions are the options of text/template, the ones Argo CD
// passes on from spec.goTemplateOptions.
var goTemplateOptions = []string{"missingkey=default", "missingkey=invalid", "missingkey=zero", "missingkey=error"}

// Validate checks that an ApplicationSet uses supported generators,
// template options and strategy.
func (s *ApplicationSet) Validate() error {
	fail := func(field, format string, args ...any) error {
		return &Error{Kind: KindApplicationSet, Name: s.Metadata.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if s.Metadata.Name == "" {
		return fail("metadata.name", "is required")
	}
	if len(s.Spec.Generators) == 0 {
		return fail("spec.generators", "at least one generator is required")
	}
	if len(s.Spec.Template) == 0 {
		return fail("spec.template", "is required")
	}
	for i, opt := range s.Spec.GoTemplateOptions {
		// text/template panics on any other option.
		if !slices.Contains(goTemplateOptions, opt) {
			return fail(fmt.Sprintf("spec.goTemplateOptions[%d]", i), "%q: want one of %s", opt, strings.Join(goTemplateOptions, ", "))
		}
	}
	if s.Spec.TemplatePatch != "" && !s.Spec.GoTemplate {
		return fail("spec.templatePatch", "needs goTemplate: true, as in Argo CD")
	}
	if st := s.Spec.Strategy; st != nil {
		if err := validateStrategy(st); err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Kind, e.Name = KindApplicationSet, s.Metadata.Name
			}
			return err
		}
	}
	for i, g := range s.Spec.Generators {
		if err := validateGenerator(fmt.Sprintf("spec.generators[%d]", i), g, 0); err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Kind, e.Name = KindApplicationSet, s.Metadata.Name
			}
			return err
		}
	}
	return nil
}

// validateGenerator checks one generator and those it nests.
func validateGenerator(field string, g Generator, depth int) error {
	fail := func(sub, format string, args ...any) error {
		return &Error{Field: field + sub, Reason: fmt.Sprintf(format, args...)}
	}
	unsupported := map[string]bool{
		"scmProvider": len(g.SCMProvider) > 0, "pullRequest": len(g.PullRequest) > 0,
		"clusterDecisionResource": len(g.ClusterDecision) > 0, "plugin": len(g.Plugin) > 0,
	}
	for _, name := range slices.Sorted(maps.Keys(unsupported)) {
		if unsupported[name] {
			return fail("."+name, "the %s generator is not supported (supported: list, clusters, git, matrix, merge)", name)
		}
	}
	if countSet(g.List != nil, g.Clusters != nil, g.Git != nil, g.Matrix != nil, g.Merge != nil) != 1 {
		return fail("", "set exactly one generator")
	}
	if g.Selector != nil {
		if _, err := metav1.LabelSelectorAsSelector(g.Selector); err != nil {
			return fail(".selector", "%v", err)
		}
	}
	switch {
	case g.Clusters != nil:
		if _, err := metav1.LabelSelectorAsSelector(&g.Clusters.Selector); err != nil {
			return fail(".clusters.selector", "%v", err)
		}
	case g.Git != nil:
		git := g.Git
		if git.RepoURL == "" {
			return fail(".git.repoURL", "is required")
		}
		if (len(git.Directories) > 0) == (len(git.Files) > 0) {
			return fail(".git", "set directories or files")
		}
		for i, d := range git.Directories {
			if _, err := path.Match(d.Path, ""); err != nil || d.Path == "" {
				return fail(fmt.Sprintf(".git.directories[%d].path", i), "%q is not a path pattern", d.Path)
			}
		}
		for i, f := range git.Files {
			if _, err := pathspecMatch(f.Path, ""); err != nil || f.Path == "" {
				return fail(fmt.Sprintf(".git.files[%d].path", i), "%q is not a path pattern", f.Path)
			}
		}
	case g.Matrix != nil || g.Merge != nil:
		name, combine := "matrix", g.Matrix
		if g.Merge != nil {
			name, combine = "merge", g.Merge
		}
		if depth >= maxGeneratorNest {
			return fail("."+name, "generators nest at most %d deep", maxGeneratorNest)
		}
		switch {
		case name == "matrix" && len(combine.Generators) != 2:
			return fail(".matrix.generators", "a matrix combines exactly two generators, not %d", len(combine.Generators))
		case name == "merge" && len(combine.Generators) < 2:
			return fail(".merge.generators", "a merge needs at least two generators")
		case name == "merge" && len(combine.MergeKeys) == 0:
			return fail(".merge.mergeKeys", "at least one merge key is required")
		}
		for i, child := range combine.Generators {
			if err := validateGenerator(fmt.Sprintf("%s.%s.generators[%d]", field, name, i), child, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func countSet(set ...bool) int {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	return n
}
