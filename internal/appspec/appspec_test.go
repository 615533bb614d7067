package appspec

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func fixtureObject(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../../test/testdata/gitops-config", path))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestDecodeUserStoryApplication(t *testing.T) {
	app, err := DecodeApplication("apps/api-service.yaml", fixtureObject(t, "apps/api-service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := app.Spec.Source.RenderSpec()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"../../environments/production/api-service-values.yaml"}, spec.GetHelm().GetValueFiles()); diff != "" {
		t.Errorf("value files (-want +got):\n%s", diff)
	}
	policy := app.SyncPolicy()
	if !policy.GetAutomated().GetPrune() || !policy.GetAutomated().GetSelfHeal() {
		t.Errorf("automated = %v, want prune and selfHeal", policy.GetAutomated())
	}
	if r := policy.GetRetry(); r.GetLimit() != 5 || r.GetBackoff().GetDuration() != "5s" || r.GetBackoff().GetFactor() != 2 || r.GetBackoff().GetMaxDuration() != "3m" {
		t.Errorf("retry = %v, want 5 / 5s / 2 / 3m", r)
	}
	if !app.Cascade() {
		t.Error("the resources finalizer must mean cascade delete")
	}
}

func TestExpandClusterGenerator(t *testing.T) {
	set, err := DecodeApplicationSet("apps/api-service-staging.yaml", fixtureObject(t, "apps/api-service-staging.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := set.Expand(context.Background(), []Cluster{
		{Name: "prod-eu", Labels: map[string]string{"env": "production"}},
		{Name: "staging-1", Labels: map[string]string{"env": "staging"}},
		{Name: "staging-2", Labels: map[string]string{"env": "staging"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range apps {
		got = append(got, a.Metadata.Name+"@"+a.Spec.Destination.Name+"/"+a.Spec.Destination.Namespace+" "+strings.Join(a.Spec.Source.Helm.ValueFiles, ","))
	}
	want := []string{
		"api-service@staging-1/staging ../../environments/staging/api-service-values.yaml",
		"api-service@staging-2/staging ../../environments/staging/api-service-values.yaml",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("generated (-want +got):\n%s", diff)
	}
}

func TestExpandListGeneratorFastTemplate(t *testing.T) {
	set := &ApplicationSet{Metadata: ObjectMeta{Name: "guestbook"}, Spec: ApplicationSetSpec{
		Generators: []Generator{{List: &ListGenerator{Elements: []json.RawMessage{json.RawMessage(`{"cluster":"prod-eu","url":"https://kubernetes.default.svc"}`)}}}},
		Template:   []byte(`{"metadata":{"name":"{{cluster}}-guestbook"},"spec":{"source":{"repoURL":"https://git.example.com/r","path":"guestbook/{{cluster}}","targetRevision":"{{ missing }}"},"destination":{"server":"{{url}}","namespace":"guestbook"}}}`),
	}}
	apps, err := set.Expand(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].Metadata.Name != "prod-eu-guestbook" || apps[0].Spec.Source.Path != "guestbook/prod-eu" || apps[0].Spec.Source.TargetRevision != "{{ missing }}" {
		t.Fatalf("expanded = %+v", apps[0])
	}
}

func TestValidationNamesTheField(t *testing.T) {
	base := `{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"name":"api"},"spec":{"source":{"repoURL":"https://git.example.com/r","path":"p"},"destination":{"server":"https://kubernetes.default.svc"}}}`
	tests := []struct {
		name, patch, want string
	}{
		{"no destination", `{"spec":{"destination":null}}`, `apps/x.yaml: Application "api": spec.destination: set name (a cluster) or server`},
		{"server not a URL", `{"spec":{"destination":{"server":"10.0.0.1:6443"}}}`, `spec.destination.server: "10.0.0.1:6443" is not an API server URL`},
		{"chart with kustomize", `{"spec":{"source":{"chart":"nginx","kustomize":{}}}}`, `spec.source: a chart renders with Helm`},
		{"plugin", `{"spec":{"source":{"plugin":{"name":"sops"}}}}`, `spec.source.plugin: config management plugins are not supported (plugin "sops")`},
		{"ref with chart", `{"spec":{"source":null,"sources":[{"repoURL":"https://charts.example.com","chart":"a","ref":"values"}]}}`, `spec.sources[0].ref: a source with a ref cannot have a chart`},
		{"unknown ref", `{"spec":{"source":null,"sources":[{"repoURL":"https://charts.example.com","chart":"a","helm":{"valueFiles":["$vals/prod.yaml"]}},{"repoURL":"https://git.example.com/v.git","ref":"values"}]}}`, `spec.sources[0].helm.valueFiles[0]: "$vals/prod.yaml": $vals is not the ref`},
		{"two refs of one name", `{"spec":{"source":null,"sources":[{"repoURL":"https://git.example.com/a.git","ref":"v"},{"repoURL":"https://git.example.com/b.git","ref":"v"}]}}`, `spec.sources[1].ref: "v" names two sources`},
		{"multi-source without repoURL", `{"spec":{"source":null,"sources":[{"path":"x"}]}}`, `spec.sources[0].repoURL: is required`},
		{"bad sync option", `{"spec":{"syncPolicy":{"syncOptions":["CreateNamespace=yes"]}}}`, `spec.syncPolicy.syncOptions[0]: CreateNamespace=yes: value must be one of true, false`},
		{"unknown sync option", `{"spec":{"syncPolicy":{"syncOptions":["Turbo=true"]}}}`, `unknown sync option "Turbo"`},
		{"bad backoff", `{"spec":{"syncPolicy":{"retry":{"backoff":{"duration":"soon"}}}}}`, `spec.syncPolicy.retry.backoff.duration: "soon" is not a duration`},
		{"upper-case name", `{"metadata":{"name":"Api.v2"}}`, `metadata.name: "Api.v2" is not a DNS-1123 subdomain`},
		{"name ending in a dot", `{"metadata":{"name":"api."}}`, `metadata.name: "api." is not a DNS-1123 subdomain`},
		{"wrong type", `{"spec":{"source":{"path":7}}}`, `spec.source.path: cannot be number`},
		{"ignoreDifferences without kind", `{"spec":{"ignoreDifferences":[{"jsonPointers":["/spec"]}]}}`, `apps/x.yaml: Application "api": spec.ignoreDifferences[0].kind: is required`},
		{"bad json pointer", `{"spec":{"ignoreDifferences":[{"kind":"Deployment","jsonPointers":["spec/replicas"]}]}}`, `spec.ignoreDifferences[0].jsonPointers[0]: "spec/replicas" does not start with /`},
		{"bad jq", `{"spec":{"ignoreDifferences":[{"kind":"Deployment","jqPathExpressions":[".spec[[["]}]}}`, `spec.ignoreDifferences[0].jqPathExpressions[0]: ".spec[[["`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := mergePatch(t, base, tc.patch)
			_, err := DecodeApplication("apps/x.yaml", obj)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func mergePatch(t *testing.T, base, patch string) []byte {
	t.Helper()
	var b, p map[string]any
	if err := yaml.Unmarshal([]byte(base), &b); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(patch), &p); err != nil {
		t.Fatal(err)
	}
	merge(b, p)
	out, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := yaml.YAMLToJSON(out)
	return j
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if d, ok := dst[k].(map[string]any); ok {
				merge(d, sub)
				continue
			}
		}
		if v == nil {
			delete(dst, k)
			continue
		}
		dst[k] = v
	}
}

func TestApplicationSetValidationNamesTheField(t *testing.T) {
	base := `{"metadata":{"name":"set"},"spec":{"goTemplate":true,"generators":[{"list":{"elements":[{"c":"prod-eu"}]}}],"template":{"metadata":{"name":"{{.c}}"}}}}`
	tests := []struct {
		name, patch, want string
	}{
		{"empty template option", `{"spec":{"goTemplateOptions":[""]}}`, `apps/set.yaml: ApplicationSet "set": spec.goTemplateOptions[0]: "": want one of missingkey=default, missingkey=invalid, missingkey=zero, missingkey=error`},
		{"unknown template option", `{"spec":{"goTemplateOptions":["missingkey=error","missingkey=bogus"]}}`, `spec.goTemplateOptions[1]: "missingkey=bogus"`},
		{"git generator without paths", `{"spec":{"generators":[{"git":{"repoURL":"r"}}]}}`, `spec.generators[0].git: set directories or files`},
		{"unsupported generator", `{"spec":{"generators":[{"pullRequest":{"github":{}}}]}}`, `spec.generators[0].pullRequest: the pullRequest generator is not supported`},
		{"matrix of one", `{"spec":{"generators":[{"matrix":{"generators":[{"list":{"elements":[]}}]}}]}}`, `spec.generators[0].matrix.generators: a matrix combines exactly two generators, not 1`},
		{"nested too deep", `{"spec":{"generators":[{"matrix":{"generators":[{"list":{"elements":[]}},{"matrix":{"generators":[{"list":{"elements":[]}},{"merge":{"mergeKeys":["a"],"generators":[{"list":{}},{"list":{}}]}}]}}]}}]}}`, `spec.generators[0].matrix.generators[1].matrix.generators[1].merge: generators nest at most 2 deep`},
		{"merge without keys", `{"spec":{"generators":[{"merge":{"generators":[{"list":{"elements":[]}},{"list":{"elements":[]}}]}}]}}`, `spec.generators[0].merge.mergeKeys: at least one merge key is required`},
		{"templatePatch without goTemplate", `{"spec":{"goTemplate":false,"templatePatch":"spec: {}"}}`, `spec.templatePatch: needs goTemplate: true`},
		{"no template", `{"spec":{"template":null}}`, `spec.template: is required`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeApplicationSet("apps/set.yaml", mergePatch(t, base, tc.patch))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestFieldsNotActedOnAreWarnings(t *testing.T) {
	obj := mergePatch(t, `{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"name":"api","uid":"x"},"spec":{"source":{"repoURL":"https://git.example.com/r","path":"p"},"destination":{"name":"prod-eu"}}}`,
		`{"spec":{"info":[{"name":"url","value":"x"}],"revisionHistoryLimit":3,"source":null,"sources":[{"repoURL":"https://git.example.com/r","path":"p","helm":{"valuesTemplate":"x"}}],"syncPolicy":{"automated":{"enabled":false,"prune":true},"managedNamespaceMetadata":{"labels":{"a":"b"}}}},"status":{"sync":{}}}`)
	app, err := DecodeApplication("apps/api.yaml", obj)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"spec.info is not acted on by Flotilla", "spec.sources[0].helm.valuesTemplate is not acted on by Flotilla"}
	if diff := cmp.Diff(want, app.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if app.SyncPolicy().GetAutomated() != nil {
		t.Error("automated.enabled: false left automation on")
	}
	if m := app.SyncPolicy().GetManagedNamespaceMetadata(); m.GetLabels()["a"] != "b" {
		t.Errorf("managedNamespaceMetadata = %v", m)
	}

	set, err := DecodeApplicationSet("apps/set.yaml", mergePatch(t, `{"metadata":{"name":"set"},"spec":{"goTemplate":true,"generators":[{"matrix":{"generators":[{"list":{"elements":[{"c":"a"}]}},{"list":{"elements":[{"d":"b"}],"elementsYaml":"x"}}]}}],"template":{"metadata":{"name":"{{.c}}{{.d}}"},"spec":{"source":{"repoURL":"r","path":"p"},"destination":{"name":"x"},"info":[]}}}}`,
		`{"spec":{"strategy":{"type":"RollingSync","deletionOrder":"Reverse","rollingSync":{"steps":[{"matchExpressions":[]}]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := set.Expand(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		"ApplicationSet set: spec.generators[0].matrix.generators[1].list.elementsYaml is not acted on by Flotilla",
		"ApplicationSet set: spec.strategy.deletionOrder is not acted on by Flotilla",
		"spec.info is not acted on by Flotilla",
	}
	if diff := cmp.Diff(want, apps[0].Warnings); diff != "" {
		t.Errorf("generated app's warnings (-want +got):\n%s", diff)
	}
}
