package appspec

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// addFixtures seeds f with the JSON form of every Argo CD object of kind in
// the test fixture's apps/, as the hub's discovery hands them over.
func addFixtures(f *testing.F, kind string) {
	f.Helper()
	files, err := filepath.Glob("../../test/testdata/gitops-config/apps/*.yaml")
	if err != nil || len(files) == 0 {
		f.Fatalf("fixture apps: %v (%d files)", err, len(files))
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		obj, err := yaml.YAMLToJSON(data)
		if err != nil {
			f.Fatal(err)
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(obj, &meta); err != nil {
			f.Fatal(err)
		}
		if meta.Kind == kind {
			f.Add(obj)
		}
	}
}

// FuzzDecodeApplication decodes arbitrary JSON as an Application, then does
// with it what the hub's discovery does. Nothing panics, and what Validate
// accepts has what discovery relies on: a name that is a DNS label, a
// source, a clusters selector that parses.
func FuzzDecodeApplication(f *testing.F) {
	addFixtures(f, KindApplication)
	for _, seed := range []string{
		`{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"name":"api"},"spec":{"source":{"repoURL":"https://git.example.com/r","path":"p"},"destination":{"server":"https://kubernetes.default.svc"}}}`,
		`{"metadata":{"name":"api","annotations":{"flotilla.dev/clusters":"env in (production),!canary"}},"spec":{"source":{"repoURL":"r","helm":{"valuesObject":{"replicas":3},"parameters":[{"name":"a","value":"1"}],"fileParameters":[{"name":"f","path":"p"}]}},"destination":{"server":"https://10.0.0.1"}}}`,
		`{"metadata":{"name":"api"},"spec":{"source":{"repoURL":"r","kustomize":{"images":["x:1"],"replicas":[{"name":"d","count":2}]}},"destination":{"name":"prod-eu"},"syncPolicy":{"automated":{"prune":true},"syncOptions":["Prune=confirm"],"retry":{"limit":3,"backoff":{"duration":"5","maxDuration":"3m","factor":2}}},"ignoreDifferences":[{"kind":"Deployment","jsonPointers":["/spec/replicas"],"jqPathExpressions":[".spec.template"]}]}}`,
		`{"metadata":{"name":"api"},"spec":{"source":{"repoURL":"r","directory":{"recurse":true,"jsonnet":{}}},"destination":{"name":"c"}}}`,
		`{"metadata":{"name":"api"},"spec":{"source":{"path":7}}}`,
		`{"metadata":{"name":"api","annotations":{"flotilla.dev/waves":"clusterLabel: region\ngates: [{bakeTime: 2m, maxUpdate: 25%, approval: true}]"}},"spec":{"source":{"repoURL":"r"},"destination":{"server":"https://kubernetes.default.svc"}}}`,
		`null`,
		`[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, object []byte) {
		app, err := DecodeApplication("apps/fuzz.yaml", object)
		if err != nil {
			return
		}
		checkDiscoverable(t, app)
	})
}

// checkDiscoverable fails unless app can be followed the way the hub's
// discovery follows an Application.
func checkDiscoverable(t *testing.T, app *Application) {
	t.Helper()
	if !ValidAppName(app.Metadata.Name) {
		t.Fatalf("accepted the name %q", app.Metadata.Name)
	}
	sources := app.AppSources()
	if len(sources) == 0 {
		t.Fatalf("accepted an Application without a source: %+v", app.Spec)
	}
	for _, src := range sources {
		if src.RepoURL == "" {
			t.Fatalf("accepted a source without a repoURL: %+v", app.Spec)
		}
		if _, err := src.RenderSpec(); err != nil {
			t.Fatalf("accepted an Application that does not convert: %v", err)
		}
	}
	if sel := app.Metadata.Annotations[ClustersAnnotation]; sel != "" {
		if _, err := ParseSelector(sel); err != nil {
			t.Fatalf("accepted the clusters selector %q: %v", sel, err)
		}
	}
	app.SyncPolicy()
	app.IgnoreDifferences()
	app.Cascade()
}

// fuzzClusters are the registered clusters ApplicationSets expand for.
var fuzzClusters = []Cluster{
	{Name: "prod-eu", Labels: map[string]string{"env": "production", "region": "eu"}, Annotations: map[string]string{"team": "web"}},
	{Name: "staging-1", Labels: map[string]string{"env": "staging"}},
	{Name: "bare"},
}

// FuzzDecodeApplicationSet decodes arbitrary JSON as an ApplicationSet and
// expands it for three clusters, as the hub's discovery does. Nothing
// panics, and every Application it generates is one discovery can follow.
func FuzzDecodeApplicationSet(f *testing.F) {
	addFixtures(f, KindApplicationSet)
	for _, seed := range []string{
		`{"metadata":{"name":"guestbook"},"spec":{"generators":[{"list":{"elements":[{"cluster":"prod-eu","url":"https://kubernetes.default.svc","nested":{"n":1}}]}}],"template":{"metadata":{"name":"{{cluster}}-guestbook"},"spec":{"source":{"repoURL":"https://git.example.com/r","path":"guestbook/{{cluster}}","targetRevision":"{{ nested.n }}"},"destination":{"server":"{{url}}","namespace":"guestbook"}}}}}`,
		`{"metadata":{"name":"per-cluster"},"spec":{"goTemplate":true,"goTemplateOptions":["missingkey=error"],"generators":[{"clusters":{"selector":{"matchExpressions":[{"key":"env","operator":"In","values":["production","staging"]}]},"values":{"tier":"web"}}}],"template":{"metadata":{"name":"{{.name}}-{{.values.tier}}"},"spec":{"source":{"repoURL":"r","path":"{{ .metadata.labels.env | upper }}"},"destination":{"name":"{{.name}}"}}}}}`,
		`{"metadata":{"name":"bad"},"spec":{"generators":[{"git":{}}],"template":{}}}`,
		`{"metadata":{"name":"bad"},"spec":{"generators":[{"list":{"elements":[1]}}],"template":{"metadata":{"name":"x"}}}}`,
		`{"metadata":{"name":"bad"},"spec":{"goTemplate":true,"generators":[{"list":{"elements":[{}]}}],"template":{"metadata":{"name":"{{"}}}}`,
		`{"metadata":{"name":"dirs"},"spec":{"generators":[{"git":{"repoURL":"https://github.com/argoproj/argo-cd.git","directories":[{"path":"apps/*"},{"path":"apps/excluded","exclude":true}]}}],"template":{"metadata":{"name":"{{path.basename}}"},"spec":{"source":{"repoURL":"r","path":"{{path}}"},"destination":{"name":"{{path[0]}}"}}}}}`,
		`{"metadata":{"name":"files"},"spec":{"goTemplate":true,"generators":[{"matrix":{"generators":[{"list":{"elements":[{"env":"dev"},{"env":"prod"}]}},{"git":{"repoURL":"https://github.com/argoproj/argo-cd.git","files":[{"path":"cluster-config/**/{{.env}}/config.json"}],"values":{"o":"{{.cluster.owner}}"}}}]}}],"templatePatch":"{{ if .values.o }}metadata: {labels: {o: x}}{{ end }}","template":{"metadata":{"name":"{{.cluster.name}}"},"spec":{"source":{"repoURL":"r","path":"{{.path.path}}"},"destination":{"name":"c"}}}}}`,
		`{"metadata":{"name":"rolling","annotations":{"flotilla.dev/waves":"autoRollback: true\ngates: [{bakeTime: 5m, analysis: {templates: [{templateName: errors}]}, minSuccessful: 50%}]"}},"spec":{"strategy":{"type":"RollingSync","deletionOrder":"Reverse","rollingSync":{"steps":[{"matchExpressions":[{"key":"env","operator":"In","values":["staging"]}]},{"matchExpressions":[{"key":"env","operator":"NotIn","values":["staging"]}],"maxUpdate":"25%"}]}},"generators":[{"clusters":{}}],"template":{"metadata":{"name":"{{name}}","labels":{"env":"{{metadata.labels.env}}"}},"spec":{"source":{"repoURL":"r","path":"p"},"destination":{"name":"{{name}}"}}}}}`,
		`{"metadata":{"name":"merged"},"spec":{"generators":[{"merge":{"mergeKeys":["name"],"generators":[{"clusters":{}},{"list":{"elements":[{"name":"bare","ns":"x"}]}}]},"selector":{"matchLabels":{"name":"bare"}}}],"template":{"metadata":{"name":"{{name}}"},"spec":{"source":{"repoURL":"r","path":"{{ns}}"},"destination":{"name":"{{name}}"}}}}}`,
	} {
		f.Add([]byte(seed))
	}
	repos := exampleRepo(f)
	f.Fuzz(func(t *testing.T, object []byte) {
		set, err := DecodeApplicationSet("apps/fuzz.yaml", object)
		if err != nil {
			return
		}
		apps, err := set.Expand(context.Background(), fuzzClusters, repos)
		if err != nil {
			return
		}
		for _, app := range apps {
			checkDiscoverable(t, app)
			if app.GeneratedBy != set {
				t.Fatalf("%s does not name the set that generated it", app.Metadata.Name)
			}
		}
	})
}

// FuzzDecodeAppProject decodes arbitrary JSON as an AppProject and asks it
// what the hub and the agents ask. Nothing panics, and what it accepts
// crosses the wire intact.
func FuzzDecodeAppProject(f *testing.F) {
	for _, seed := range []string{
		`{"metadata":{"name":"team"},"spec":{"sourceRepos":["https://github.com/org/*","!https://github.com/org/secret"],"destinations":[{"server":"*","namespace":"!kube-system"},{"name":"prod-*","namespace":"*"}],"clusterResourceWhitelist":[{"group":"","kind":"Namespace","name":"team-*"}],"namespaceResourceWhitelist":[],"namespaceResourceBlacklist":[{"group":"","kind":"Secret"}],"sourceNamespaces":["team-*","/^ops-[0-9]+$/"]}}`,
		`{"metadata":{"name":"x"},"spec":{"sourceRepos":["[invalid"]}}`,
		`{"metadata":{"name":"x"},"spec":{"sourceNamespaces":["/(/"]}}`,
		`null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, object []byte) {
		p, err := DecodeAppProject("projects/fuzz.yaml", object)
		if err != nil {
			return
		}
		p.SourcePermitted("https://github.com/org/app")
		p.DestinationPermitted("https://kubernetes.default.svc", "prod-eu", "apps")
		p.AppNamespacePermitted("team-a")
		for _, namespaced := range []bool{true, false} {
			want, _ := p.ResourcePermitted("apps", "Deployment", "web", namespaced)
			got := true // no policy: the agent checks nothing
			if policy := p.Policy(); policy != nil {
				got, _ = ProjectFromPolicy(policy).ResourcePermitted("apps", "Deployment", "web", namespaced)
			}
			if got != want {
				t.Fatalf("the policy on the wire decides %v where the project decides %v", got, want)
			}
		}
	})
}

// FuzzParseParamFile reads arbitrary bytes as a git files generator's
// file: nothing panics, and what it accepts is objects.
func FuzzParseParamFile(f *testing.F) {
	for _, seed := range []string{
		`{"cluster":{"name":"engineering-dev","address":"https://1.2.3.4"}}`,
		"- {cluster: {name: a}}\n- {cluster: {name: b}}\n",
		"a: &x [*x]",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objects, err := parseParamFile(data)
		if err != nil {
			return
		}
		for _, o := range objects {
			_ = flatten("", o)
		}
	})
}
