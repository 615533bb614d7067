package waves

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Annotations Argo CD and Helm define.
const (
	SyncWaveAnnotation       = "argocd.argoproj.io/sync-wave"
	HookAnnotation           = "argocd.argoproj.io/hook"
	HookDeleteAnnotation     = "argocd.argoproj.io/hook-delete-policy"
	HelmHookAnnotation       = "helm.sh/hook"
	HelmWeightAnnotation     = "helm.sh/hook-weight"
	HelmHookDeleteAnnotation = "helm.sh/hook-delete-policy"
)

// Phase is when a hook runs.
type Phase string

// Phases, in the order a sync runs them; SyncFail runs only when one fails.
const (
	PreSync  Phase = "PreSync"
	Sync     Phase = "Sync"
	PostSync Phase = "PostSync"
	SyncFail Phase = "SyncFail"
	// skip is Argo CD's Skip hook: the object is not applied at all.
	skip Phase = "Skip"
)

// Delete policies of hooks.
const (
	BeforeHookCreation = "BeforeHookCreation"
	HookSucceeded      = "HookSucceeded"
	HookFailed         = "HookFailed"
)

// Hook is one hook object of a phase.
type Hook struct {
	Object *unstructured.Unstructured
	Wave   int
	// Delete holds its delete policies; BeforeHookCreation when the
	// object names none, as in Argo CD.
	Delete map[string]bool
}

// Step is one wave of one phase: resources to apply and hooks to run,
// both to be finished (healthy, complete) before the next step.
type Step struct {
	Phase     Phase
	Wave      int
	Resources []*unstructured.Unstructured
	Hooks     []Hook
}

// Plan is an application's sync in order.
type Plan struct {
	// Steps are PreSync, Sync and PostSync waves in order.
	Steps []Step
	// SyncFail are the hooks to run when a step fails.
	SyncFail []Hook
	// Resources are every non-hook object to apply (and keep in the
	// inventory); hooks are never pruned, they follow their delete policy.
	Resources []*unstructured.Unstructured
}

// Simple reports whether the plan is one wave of resources and no hooks,
// which a sync applies all at once.
func (p *Plan) Simple() bool {
	return len(p.SyncFail) == 0 && len(p.Steps) <= 1 && (len(p.Steps) == 0 || len(p.Steps[0].Hooks) == 0)
}

// Build orders objs into a plan. An annotation that does not parse is an
// error naming the object and the annotation.
func Build(objs []*unstructured.Unstructured) (*Plan, error) {
	type key struct {
		phase Phase
		wave  int
	}
	steps := map[key]*Step{}
	plan := &Plan{}
	step := func(phase Phase, wave int) *Step {
		k := key{phase, wave}
		if steps[k] == nil {
			steps[k] = &Step{Phase: phase, Wave: wave}
		}
		return steps[k]
	}
	for _, obj := range objs {
		wave, err := Wave(obj)
		if err != nil {
			return nil, err
		}
		phases, policies, err := hookOf(obj)
		if err != nil {
			return nil, err
		}
		if len(phases) == 0 {
			plan.Resources = append(plan.Resources, obj)
			s := step(Sync, wave)
			s.Resources = append(s.Resources, obj)
			continue
		}
		for _, phase := range phases {
			h := Hook{Object: obj, Wave: wave, Delete: policies}
			switch phase {
			case skip:
			case SyncFail:
				plan.SyncFail = append(plan.SyncFail, h)
			default:
				s := step(phase, wave)
				s.Hooks = append(s.Hooks, h)
			}
		}
	}
	order := map[Phase]int{PreSync: 0, Sync: 1, PostSync: 2}
	for _, s := range steps {
		plan.Steps = append(plan.Steps, *s)
	}
	slices.SortFunc(plan.Steps, func(a, b Step) int {
		if order[a.Phase] != order[b.Phase] {
			return order[a.Phase] - order[b.Phase]
		}
		return a.Wave - b.Wave
	})
	slices.SortStableFunc(plan.SyncFail, func(a, b Hook) int { return a.Wave - b.Wave })
	return plan, nil
}

// Wave is an object's sync wave: argocd.argoproj.io/sync-wave, else
// helm.sh/hook-weight (on any object, hook or not, as in Argo CD's
// gitops-engine), else 0.
func Wave(obj *unstructured.Unstructured) (int, error) {
	a := obj.GetAnnotations()
	for _, name := range []string{SyncWaveAnnotation, HelmWeightAnnotation} {
		v, ok := a[name]
		if !ok {
			continue
		}
		w, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%s %s: annotation %s: %q is not an integer", obj.GetKind(), objectName(obj), name, v)
		}
		return w, nil
	}
	return 0, nil
}

// helmPhases maps Helm hooks to Argo CD phases as Argo CD does; Helm's
// other hooks (delete, rollback, test) are not applied.
var helmPhases = map[string]Phase{
	"pre-install": PreSync, "pre-upgrade": PreSync,
	"post-install": PostSync, "post-upgrade": PostSync,
	"pre-delete": skip, "post-delete": skip, "pre-rollback": skip, "post-rollback": skip,
	"test": skip, "test-success": skip, "test-failure": skip, "crd-install": skip,
}

var helmPolicies = map[string]string{
	"before-hook-creation": BeforeHookCreation, "hook-succeeded": HookSucceeded, "hook-failed": HookFailed,
}

// hookOf reads an object's hook phases and delete policies; no phases
// means an ordinary resource.
func hookOf(obj *unstructured.Unstructured) ([]Phase, map[string]bool, error) {
	a := obj.GetAnnotations()
	var phases []Phase
	policies := map[string]bool{}
	if v, ok := a[HookAnnotation]; ok {
		for _, p := range splitList(v) {
			switch Phase(p) {
			case PreSync, Sync, PostSync, SyncFail, skip:
				phases = append(phases, Phase(p))
			default:
				return nil, nil, fmt.Errorf("%s %s: annotation %s: unknown hook %q (want PreSync, Sync, PostSync, SyncFail or Skip)", obj.GetKind(), objectName(obj), HookAnnotation, p)
			}
		}
		for _, p := range splitList(a[HookDeleteAnnotation]) {
			switch p {
			case BeforeHookCreation, HookSucceeded, HookFailed:
				policies[p] = true
			default:
				return nil, nil, fmt.Errorf("%s %s: annotation %s: unknown policy %q (want BeforeHookCreation, HookSucceeded or HookFailed)", obj.GetKind(), objectName(obj), HookDeleteAnnotation, p)
			}
		}
	} else if v, ok := a[HelmHookAnnotation]; ok {
		for _, h := range splitList(v) {
			p, known := helmPhases[h]
			if !known {
				return nil, nil, fmt.Errorf("%s %s: annotation %s: unknown Helm hook %q", obj.GetKind(), objectName(obj), HelmHookAnnotation, h)
			}
			if !slices.Contains(phases, p) {
				phases = append(phases, p)
			}
		}
		for _, p := range splitList(a[HelmHookDeleteAnnotation]) {
			if policy, known := helmPolicies[p]; known {
				policies[policy] = true
			}
		}
	}
	if len(phases) > 0 && len(policies) == 0 {
		policies[BeforeHookCreation] = true
	}
	return phases, policies, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// objectName is namespace/name, or generateName… for a hook without a name.
func objectName(obj *unstructured.Unstructured) string {
	name := obj.GetName()
	if name == "" {
		name = obj.GetGenerateName() + "…"
	}
	if obj.GetNamespace() == "" {
		return name
	}
	return obj.GetNamespace() + "/" + name
}
