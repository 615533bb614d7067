package appspec

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/gobwas/glob"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// KindAppProject is Argo CD's project: policy the hub enforces, never an
// object in a cluster.
const KindAppProject = "AppProject"

// DefaultProject is the project an Application with no spec.project
// belongs to. Without a manifest of that name it permits everything, as
// the project Argo CD creates does.
const DefaultProject = "default"

// ControlPlaneNamespace is where Argo CD's Applications live; its
// projects' sourceNamespaces restrict Applications elsewhere only.
const ControlPlaneNamespace = "argocd"

// AppProject is argoproj.io/v1alpha1 AppProject: the fields Flotilla
// enforces.
type AppProject struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   ObjectMeta     `json:"metadata"`
	Spec       AppProjectSpec `json:"spec"`
}

// AppProjectSpec is spec of an AppProject.
type AppProjectSpec struct {
	SourceRepos  []string      `json:"sourceRepos,omitempty"`
	Destinations []Destination `json:"destinations,omitempty"`
	// ClusterResourceWhitelist empty permits no cluster-scoped kind.
	ClusterResourceWhitelist []ResourceRestriction `json:"clusterResourceWhitelist,omitempty"`
	ClusterResourceBlacklist []ResourceRestriction `json:"clusterResourceBlacklist,omitempty"`
	// NamespaceResourceWhitelist nil permits every namespaced kind; an
	// empty list permits none.
	NamespaceResourceWhitelist []ResourceRestriction `json:"namespaceResourceWhitelist"`
	NamespaceResourceBlacklist []ResourceRestriction `json:"namespaceResourceBlacklist,omitempty"`
	SourceNamespaces           []string              `json:"sourceNamespaces,omitempty"`
}

// ResourceRestriction is a group and kind (and for cluster-scoped kinds, a
// name), each a filepath.Match pattern.
type ResourceRestriction struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Name  string `json:"name,omitempty"`
}

// PermissiveProject is the default project Argo CD creates: every
// repository, destination and kind.
func PermissiveProject() *AppProject {
	return &AppProject{
		Metadata: ObjectMeta{Name: DefaultProject},
		Spec: AppProjectSpec{
			SourceRepos:              []string{"*"},
			Destinations:             []Destination{{Server: "*", Name: "*", Namespace: "*"}},
			ClusterResourceWhitelist: []ResourceRestriction{{Group: "*", Kind: "*"}},
		},
	}
}

// DecodeAppProject reads an AppProject and checks its patterns.
func DecodeAppProject(file string, object []byte) (*AppProject, error) {
	var p AppProject
	if err := strictDecode(object, &p); err != nil {
		return nil, &Error{File: file, Kind: KindAppProject, Name: nameOf(object), Reason: err.Error()}
	}
	fail := func(field, format string, args ...any) error {
		return &Error{File: file, Kind: KindAppProject, Name: p.Metadata.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if p.Metadata.Name == "" {
		return nil, fail("metadata.name", "is required")
	}
	for i, r := range p.Spec.SourceRepos {
		if _, err := glob.Compile(strings.TrimPrefix(r, "!"), '/'); err != nil {
			return nil, fail(fmt.Sprintf("spec.sourceRepos[%d]", i), "%q is not a glob: %v", r, err)
		}
	}
	for i, d := range p.Spec.Destinations {
		for _, pattern := range []string{d.Server, d.Name, d.Namespace} {
			if _, err := glob.Compile(strings.TrimPrefix(pattern, "!")); err != nil {
				return nil, fail(fmt.Sprintf("spec.destinations[%d]", i), "%q is not a glob: %v", pattern, err)
			}
		}
	}
	lists := map[string][]ResourceRestriction{
		"clusterResourceWhitelist": p.Spec.ClusterResourceWhitelist, "clusterResourceBlacklist": p.Spec.ClusterResourceBlacklist,
		"namespaceResourceWhitelist": p.Spec.NamespaceResourceWhitelist, "namespaceResourceBlacklist": p.Spec.NamespaceResourceBlacklist,
	}
	for name, list := range lists {
		for i, r := range list {
			for _, pattern := range []string{r.Group, r.Kind, r.Name} {
				if _, err := filepath.Match(pattern, ""); err != nil {
					return nil, fail(fmt.Sprintf("spec.%s[%d]", name, i), "%q is not a pattern: %v", pattern, err)
				}
			}
		}
	}
	for i, ns := range p.Spec.SourceNamespaces {
		if strings.HasPrefix(ns, "/") && strings.HasSuffix(ns, "/") && len(ns) > 1 {
			if _, err := regexp.Compile(ns[1 : len(ns)-1]); err != nil {
				return nil, fail(fmt.Sprintf("spec.sourceNamespaces[%d]", i), "%q is not a regular expression: %v", ns, err)
			}
		}
	}
	return &p, nil
}

// SourcePermitted reports whether sourceRepos permit repoURL, as Argo CD
// decides: some pattern matches and no "!" pattern excludes it.
func (p *AppProject) SourcePermitted(repoURL string) bool {
	src := normalizeRepoURL(repoURL)
	matched := false
	for _, pattern := range p.Spec.SourceRepos {
		deny := strings.HasPrefix(pattern, "!")
		normalized := normalizeRepoURL(strings.TrimPrefix(pattern, "!"))
		if deny {
			normalized = "!" + normalized
		}
		switch ok := globMatch(normalized, src, '/'); {
		case ok:
			matched = true
		case deny:
			return false
		}
	}
	return matched
}

// DestinationPermitted reports whether destinations permit a cluster (its
// server and name) and namespace, as Argo CD decides.
func (p *AppProject) DestinationPermitted(server, name, namespace string) bool {
	matched := false
	for _, d := range p.Spec.Destinations {
		nameOK := name != "" && globMatch(d.Name, name)
		serverOK := server != "" && globMatch(d.Server, server)
		namespaceOK := globMatch(d.Namespace, namespace)
		switch {
		case (serverOK || nameOK) && namespaceOK:
			matched = true
		case (!nameOK && isDeny(d.Name)) || (!serverOK && isDeny(d.Server)) && namespaceOK:
			return false
		case !namespaceOK && isDeny(d.Namespace) && serverOK:
			return false
		}
	}
	return matched
}

// ResourcePermitted reports whether the project permits an object of
// group and kind (cluster-scoped ones by name too), as Argo CD decides,
// and if not, the list that refuses it.
func (p *AppProject) ResourcePermitted(group, kind, name string, namespaced bool) (bool, string) {
	if namespaced {
		white, black := p.Spec.NamespaceResourceWhitelist, p.Spec.NamespaceResourceBlacklist
		switch {
		case white != nil && !inList(white, group, kind, ""):
			return false, "namespaceResourceWhitelist"
		case inList(black, group, kind, ""):
			return false, "namespaceResourceBlacklist"
		}
		return true, ""
	}
	switch {
	case !inList(p.Spec.ClusterResourceWhitelist, group, kind, name):
		return false, "clusterResourceWhitelist"
	case inList(p.Spec.ClusterResourceBlacklist, group, kind, name):
		return false, "clusterResourceBlacklist"
	}
	return true, ""
}

// AppNamespacePermitted reports whether an Application in namespace may
// use the project: one in the control plane's namespace (or none) always
// may; others only where sourceNamespaces name it (globs, or /regexp/).
func (p *AppProject) AppNamespacePermitted(namespace string) bool {
	if namespace == "" || namespace == ControlPlaneNamespace {
		return true
	}
	for _, pattern := range p.Spec.SourceNamespaces {
		if strings.HasPrefix(pattern, "/") && strings.HasSuffix(pattern, "/") && len(pattern) > 1 {
			if re, err := regexp.Compile(pattern[1 : len(pattern)-1]); err == nil && re.MatchString(namespace) {
				return true
			}
			continue
		}
		if globMatch(pattern, namespace) {
			return true
		}
	}
	return false
}

// permitsEverything reports whether the project permits every kind, by
// any name, in every namespace of every cluster.
func (p *AppProject) permitsEverything() bool {
	if len(p.Spec.ClusterResourceBlacklist) > 0 || p.Spec.NamespaceResourceWhitelist != nil || len(p.Spec.NamespaceResourceBlacklist) > 0 {
		return false
	}
	all := false
	for _, r := range p.Spec.ClusterResourceWhitelist {
		all = all || (r.Group == "*" && r.Kind == "*" && (r.Name == "" || r.Name == "*"))
	}
	if !all {
		return false
	}
	anywhere := false
	for _, d := range p.Spec.Destinations {
		if isDeny(d.Server) || isDeny(d.Name) || isDeny(d.Namespace) {
			return false
		}
		anywhere = anywhere || (d.Namespace == "*" && (d.Server == "*" || d.Name == "*"))
	}
	return anywhere
}

func inList(list []ResourceRestriction, group, kind, name string) bool {
	for _, r := range list {
		if ok, err := filepath.Match(r.Kind, kind); !ok || err != nil {
			continue
		}
		if ok, err := filepath.Match(r.Group, group); !ok || err != nil {
			continue
		}
		if r.Name == "" {
			return true
		}
		if ok, err := filepath.Match(r.Name, name); ok && err == nil {
			return true
		}
	}
	return false
}

func isDeny(pattern string) bool { return strings.HasPrefix(pattern, "!") }

// globMatch is Argo CD's: a "!" pattern matches what the rest does not.
func globMatch(pattern, value string, separators ...rune) bool {
	if isDeny(pattern) {
		return !globCompiled(pattern[1:], value, separators)
	}
	return pattern == "*" || globCompiled(pattern, value, separators)
}

func globCompiled(pattern, value string, separators []rune) bool {
	g, err := glob.Compile(pattern, separators...)
	return err == nil && g.Match(value)
}

// normalizeRepoURL is Argo CD's NormalizeGitURL: lower case, no ".git",
// an scp-like SSH URL as a path.
func normalizeRepoURL(repo string) string {
	repo = strings.ToLower(strings.TrimSpace(repo))
	if !strings.Contains(repo, "://") && strings.Contains(repo, "@") && strings.Contains(repo, ":") {
		repo = "ssh://" + strings.Replace(repo, ":", "/", 1)
	}
	repo = strings.TrimSuffix(repo, ".git")
	u, err := url.Parse(repo)
	if err != nil {
		return repo
	}
	return strings.TrimPrefix(u.String(), "ssh://")
}

// Policy is what of the project an agent enforces, for the wire: nil
// for a project that permits every kind in every namespace (the default
// project), which the agent need not check.
func (p *AppProject) Policy() *flotillav1.ProjectPolicy {
	if p.permitsEverything() {
		return nil
	}
	restrictions := func(list []ResourceRestriction) []*flotillav1.ResourceRestriction {
		var out []*flotillav1.ResourceRestriction
		for _, r := range list {
			out = append(out, &flotillav1.ResourceRestriction{Group: r.Group, Kind: r.Kind, Name: r.Name})
		}
		return out
	}
	out := &flotillav1.ProjectPolicy{
		Name:                          p.Metadata.Name,
		ClusterResourceWhitelist:      restrictions(p.Spec.ClusterResourceWhitelist),
		ClusterResourceBlacklist:      restrictions(p.Spec.ClusterResourceBlacklist),
		NamespaceResourceWhitelistSet: p.Spec.NamespaceResourceWhitelist != nil,
		NamespaceResourceWhitelist:    restrictions(p.Spec.NamespaceResourceWhitelist),
		NamespaceResourceBlacklist:    restrictions(p.Spec.NamespaceResourceBlacklist),
	}
	for _, d := range p.Spec.Destinations {
		out.Destinations = append(out.Destinations, &flotillav1.Destination{Server: d.Server, Name: d.Name, Namespace: d.Namespace})
	}
	return out
}

// ProjectFromPolicy is the project a policy describes, for an agent to
// ask it what it permits.
func ProjectFromPolicy(policy *flotillav1.ProjectPolicy) *AppProject {
	restrictions := func(list []*flotillav1.ResourceRestriction) []ResourceRestriction {
		out := make([]ResourceRestriction, 0, len(list))
		for _, r := range list {
			out = append(out, ResourceRestriction{Group: r.GetGroup(), Kind: r.GetKind(), Name: r.GetName()})
		}
		return out
	}
	p := &AppProject{Metadata: ObjectMeta{Name: policy.GetName()}, Spec: AppProjectSpec{
		ClusterResourceWhitelist:   restrictions(policy.GetClusterResourceWhitelist()),
		ClusterResourceBlacklist:   restrictions(policy.GetClusterResourceBlacklist()),
		NamespaceResourceBlacklist: restrictions(policy.GetNamespaceResourceBlacklist()),
	}}
	if policy.GetNamespaceResourceWhitelistSet() {
		p.Spec.NamespaceResourceWhitelist = restrictions(policy.GetNamespaceResourceWhitelist())
	}
	for _, d := range policy.GetDestinations() {
		p.Spec.Destinations = append(p.Spec.Destinations, Destination{Server: d.GetServer(), Name: d.GetName(), Namespace: d.GetNamespace()})
	}
	return p
}
