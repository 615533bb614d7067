package waves

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func obj(kind, name string, annotations map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion("v1")
	u.SetKind(kind)
	u.SetName(name)
	u.SetNamespace("prod")
	u.SetAnnotations(annotations)
	return u
}

func describe(p *Plan) string {
	var b strings.Builder
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "%s/%d:", s.Phase, s.Wave)
		for _, r := range s.Resources {
			b.WriteString(" " + r.GetName())
		}
		for _, h := range s.Hooks {
			b.WriteString(" hook:" + h.Object.GetName())
		}
		b.WriteString("\n")
	}
	for _, h := range p.SyncFail {
		b.WriteString("SyncFail: hook:" + h.Object.GetName() + "\n")
	}
	return b.String()
}

func TestBuildOrdersPhasesAndWaves(t *testing.T) {
	p, err := Build([]*unstructured.Unstructured{
		obj("ConfigMap", "config", map[string]string{SyncWaveAnnotation: "-1"}),
		obj("Deployment", "app", nil),
		obj("Service", "svc", map[string]string{SyncWaveAnnotation: "2"}),
		obj("Job", "migrate", map[string]string{HookAnnotation: "PreSync", HookDeleteAnnotation: "HookSucceeded"}),
		obj("Job", "smoke", map[string]string{HookAnnotation: "PostSync"}),
		obj("Job", "notify", map[string]string{HookAnnotation: "SyncFail"}),
		obj("Job", "helm-pre", map[string]string{HelmHookAnnotation: "pre-install,pre-upgrade", HelmWeightAnnotation: "-5"}),
		obj("Pod", "helm-test", map[string]string{HelmHookAnnotation: "test"}),
		obj("ConfigMap", "skipped", map[string]string{HookAnnotation: "Skip"}),
		obj("Job", "in-sync", map[string]string{HookAnnotation: "Sync", SyncWaveAnnotation: "1"}),
		// A Helm weight on an object that is no hook is its wave, as in
		// Argo CD; sync-wave wins over it.
		obj("Secret", "weighted", map[string]string{HelmWeightAnnotation: "3"}),
		obj("Secret", "both", map[string]string{HelmWeightAnnotation: "-7", SyncWaveAnnotation: "2"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `PreSync/-5: hook:helm-pre
PreSync/0: hook:migrate
Sync/-1: config
Sync/0: app
Sync/1: hook:in-sync
Sync/2: svc both
Sync/3: weighted
PostSync/0: hook:smoke
SyncFail: hook:notify
`
	if got := describe(p); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	if len(p.Resources) != 5 || p.Simple() {
		t.Errorf("resources %d, simple %t", len(p.Resources), p.Simple())
	}
	if d := p.Steps[1].Hooks[0].Delete; !d[HookSucceeded] || d[BeforeHookCreation] {
		t.Errorf("migrate delete policy = %v", d)
	}
	if d := p.Steps[7].Hooks[0].Delete; !d[BeforeHookCreation] {
		t.Errorf("a hook without a policy gets BeforeHookCreation, got %v", d)
	}
}

func TestBuildSimpleAndBadInput(t *testing.T) {
	p, err := Build([]*unstructured.Unstructured{obj("ConfigMap", "a", nil), obj("Service", "b", map[string]string{SyncWaveAnnotation: "0"})})
	if err != nil || !p.Simple() {
		t.Errorf("one wave, no hooks: simple=%t err=%v", p != nil && p.Simple(), err)
	}
	for _, tc := range []struct {
		annotations map[string]string
		want        string
	}{
		{map[string]string{SyncWaveAnnotation: "first"}, `ConfigMap prod/x: annotation argocd.argoproj.io/sync-wave: "first" is not an integer`},
		{map[string]string{HelmWeightAnnotation: "heavy"}, `ConfigMap prod/x: annotation helm.sh/hook-weight: "heavy" is not an integer`},
		{map[string]string{HookAnnotation: "PreSynk"}, `unknown hook "PreSynk"`},
		{map[string]string{HookAnnotation: "PreSync", HookDeleteAnnotation: "Always"}, `unknown policy "Always"`},
		{map[string]string{HelmHookAnnotation: "pre-instal"}, `unknown Helm hook "pre-instal"`},
	} {
		if _, err := Build([]*unstructured.Unstructured{obj("ConfigMap", "x", tc.annotations)}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.annotations, err, tc.want)
		}
	}
}
