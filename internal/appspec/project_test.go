package appspec

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func project(t *testing.T, spec string) *AppProject {
	t.Helper()
	p, err := DecodeAppProject("projects/p.yaml", mergePatch(t, `{"apiVersion":"argoproj.io/v1alpha1","kind":"AppProject","metadata":{"name":"team"}}`, `{"spec":`+spec+`}`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The cases follow Argo CD's AppProject code and documentation
// (docs/user-guide/projects.md): some allow rule matches and no deny rule
// rejects. As in Argo CD's code, a deny rule that does not reject a
// value counts as a match: a list of deny rules alone permits the rest.
func TestProjectSourceRepos(t *testing.T) {
	allow := project(t, `{"sourceRepos":["https://github.com/org/*","https://charts.example.com"]}`)
	deny := project(t, `{"sourceRepos":["!https://github.com/org/secret","!https://gitlab.com/group/**","*"]}`)
	tests := []struct {
		project *AppProject
		repo    string
		want    bool
	}{
		{allow, "https://github.com/org/app", true},
		{allow, "https://github.com/org/app.git", true},
		{allow, "https://GitHub.com/org/App", true},
		{allow, "https://github.com/org/team/app", false}, // '*' stops at '/'
		{allow, "https://github.com/other/app", false},
		{allow, "https://charts.example.com", true},
		{allow, "https://charts.example.com/other", false},
		{deny, "https://github.com/org/secret", false},
		{deny, "https://github.com/org/secret.git", false},
		{deny, "https://gitlab.com/group/a/b", false},
		{deny, "https://github.com/org/app", true},
		{project(t, `{"sourceRepos":["!https://github.com/org/secret"]}`), "https://github.com/org/app", true},
		{project(t, `{}`), "https://github.com/org/app", false},
	}
	for _, tc := range tests {
		if got := tc.project.SourcePermitted(tc.repo); got != tc.want {
			t.Errorf("%v: SourcePermitted(%q) = %v, want %v", tc.project.Spec.SourceRepos, tc.repo, got, tc.want)
		}
	}
}

func TestProjectDestinations(t *testing.T) {
	allow := project(t, `{"destinations":[
		{"server":"https://kubernetes.default.svc","namespace":"team-*"},
		{"name":"prod-*","namespace":"prod"}]}`)
	deny := project(t, `{"destinations":[
		{"server":"*","namespace":"!kube-system"},
		{"name":"!prod-us","namespace":"*"},
		{"server":"*","namespace":"*"}]}`)
	tests := []struct {
		project          *AppProject
		server, name, ns string
		want             bool
	}{
		{allow, "https://kubernetes.default.svc", "staging-1", "team-a", true},
		{allow, "https://kubernetes.default.svc", "staging-1", "kube-system", false},
		{allow, "", "prod-eu", "prod", true},
		{allow, "", "prod-eu", "dev", false},
		{allow, "", "dev-1", "prod", false},
		{deny, "https://kubernetes.default.svc", "c", "kube-system", false},
		{deny, "https://kubernetes.default.svc", "c", "apps", true},
		{deny, "", "prod-us", "apps", false},
		{deny, "", "prod-eu", "apps", true},
	}
	for _, tc := range tests {
		if got := tc.project.DestinationPermitted(tc.server, tc.name, tc.ns); got != tc.want {
			t.Errorf("DestinationPermitted(%q, %q, %q) = %v, want %v", tc.server, tc.name, tc.ns, got, tc.want)
		}
	}
}

func TestProjectResources(t *testing.T) {
	tests := []struct {
		name, spec       string
		group, kind, obj string
		namespaced       bool
		want             bool
		wantList         string
	}{
		{"no cluster whitelist", `{}`, "rbac.authorization.k8s.io", "ClusterRole", "x", false, false, "clusterResourceWhitelist"},
		{"cluster whitelist", `{"clusterResourceWhitelist":[{"group":"","kind":"Namespace"}]}`, "", "Namespace", "x", false, true, ""},
		{"cluster whitelist by name", `{"clusterResourceWhitelist":[{"group":"*","kind":"ClusterRole","name":"team-*"}]}`, "rbac.authorization.k8s.io", "ClusterRole", "admin", false, false, "clusterResourceWhitelist"},
		{"cluster blacklist", `{"clusterResourceWhitelist":[{"group":"*","kind":"*"}],"clusterResourceBlacklist":[{"group":"","kind":"Namespace"}]}`, "", "Namespace", "x", false, false, "clusterResourceBlacklist"},
		{"namespaced default", `{}`, "apps", "Deployment", "x", true, true, ""},
		{"namespaced empty whitelist", `{"namespaceResourceWhitelist":[]}`, "apps", "Deployment", "x", true, false, "namespaceResourceWhitelist"},
		{"namespaced whitelist", `{"namespaceResourceWhitelist":[{"group":"apps","kind":"*"}]}`, "apps", "Deployment", "x", true, true, ""},
		{"namespaced blacklist", `{"namespaceResourceBlacklist":[{"group":"","kind":"Secret"}]}`, "", "Secret", "x", true, false, "namespaceResourceBlacklist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := project(t, tc.spec)
			for _, q := range []*AppProject{p, ProjectFromPolicy(p.Policy())} {
				ok, list := q.ResourcePermitted(tc.group, tc.kind, tc.obj, tc.namespaced)
				if ok != tc.want || list != tc.wantList {
					t.Errorf("ResourcePermitted = %v %q, want %v %q", ok, list, tc.want, tc.wantList)
				}
			}
		})
	}
	// A project that permits everything needs no check at the agent.
	if PermissiveProject().Policy() != nil || project(t, `{"clusterResourceWhitelist":[{"group":"*","kind":"*"}],"destinations":[{"server":"*","namespace":"*"}]}`).Policy() != nil {
		t.Error("a project that permits everything sends a policy")
	}
	// The policy crosses the wire intact.
	p := project(t, `{"namespaceResourceWhitelist":[],"destinations":[{"server":"*","namespace":"a"}]}`)
	if !proto.Equal(p.Policy(), ProjectFromPolicy(p.Policy()).Policy()) {
		t.Error("policy round trip lost something")
	}
}

func TestProjectSourceNamespaces(t *testing.T) {
	p := project(t, `{"sourceNamespaces":["team-*","/^ops-[0-9]+$/"]}`)
	for ns, want := range map[string]bool{"": true, "argocd": true, "team-a": true, "ops-12": true, "ops-x": false, "other": false} {
		if got := p.AppNamespacePermitted(ns); got != want {
			t.Errorf("AppNamespacePermitted(%q) = %v, want %v", ns, got, want)
		}
	}
}

func TestAppProjectValidation(t *testing.T) {
	_, err := DecodeAppProject("p.yaml", []byte(`{"metadata":{"name":"x"},"spec":{"sourceNamespaces":["/[/"]}}`))
	if err == nil || !strings.Contains(err.Error(), `AppProject "x": spec.sourceNamespaces[0]`) {
		t.Errorf("bad regexp: %v", err)
	}
	_, err = DecodeAppProject("p.yaml", []byte(`{"metadata":{"name":"x"},"spec":{"clusterResourceWhitelist":[{"group":"[","kind":"*"}]}}`))
	if err == nil || !strings.Contains(err.Error(), "spec.clusterResourceWhitelist[0]") {
		t.Errorf("bad pattern: %v", err)
	}
}
