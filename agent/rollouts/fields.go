package rollouts

import (
	"fmt"
	"slices"
	"sort"
)

// fieldSet lists the fields of one part of a Rollout's spec that the
// agent's rollouts controller acts on, and the parts below it to check.
type fieldSet struct {
	known    []string
	children map[string]fieldSet
	// each is checked on every element of a list field.
	each map[string]fieldSet
}

// rolloutFields are the Rollout spec fields the controller acts on. Argo
// Rollouts defines more; each of those is refused by name, never ignored:
// a Rollout that asks for what the controller does not do is an
// InvalidSpec, not a rollout that quietly does something else.
var rolloutFields = fieldSet{
	known: []string{"replicas", "selector", "template", "workloadRef", "minReadySeconds", "paused", "revisionHistoryLimit",
		"rollbackWindow", "analysis", "strategy", "progressDeadlineSeconds", "progressDeadlineAbort"},
	children: map[string]fieldSet{
		"strategy": {
			known: []string{"canary", "blueGreen"},
			children: map[string]fieldSet{
				"canary": {
					known: []string{"canaryService", "stableService", "steps", "trafficRouting", "maxSurge", "maxUnavailable", "analysis",
						"scaleDownDelaySeconds", "abortScaleDownDelaySeconds", "dynamicStableScale"},
					children: map[string]fieldSet{
						// Routers other than nginx and the Gateway API plugin are
						// refused by Canary.router, naming the two it drives.
						"trafficRouting": {known: []string{"nginx", "plugins", "istio", "alb", "smi", "ambassador", "appMesh", "traefik", "apisix"}},
						"analysis":       {known: []string{"templates", "args", "dryRun", "startingStep"}},
					},
					each: map[string]fieldSet{
						"steps": {known: []string{"setWeight", "pause", "analysis", "setCanaryScale", "experiment", "setHeaderRoute", "setMirrorRoute", "plugin"},
							children: map[string]fieldSet{"analysis": {known: []string{"templates", "args", "dryRun"}}}},
					},
				},
				"blueGreen": {
					known: []string{"activeService", "previewService", "previewReplicaCount", "autoPromotionEnabled", "autoPromotionSeconds",
						"scaleDownDelaySeconds", "abortScaleDownDelaySeconds", "prePromotionAnalysis", "postPromotionAnalysis"},
					children: map[string]fieldSet{
						"prePromotionAnalysis":  {known: []string{"templates", "args", "dryRun"}},
						"postPromotionAnalysis": {known: []string{"templates", "args", "dryRun"}},
					},
				},
			},
		},
		"analysis": {known: []string{"successfulRunHistoryLimit", "unsuccessfulRunHistoryLimit"}},
	},
}

// unsupportedField names the first field of spec (in a stable order) the
// controller does not act on.
func unsupportedField(spec map[string]any) error {
	return rolloutFields.check("spec", spec)
}

func (f fieldSet) check(path string, obj map[string]any) error {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(f.known, k) {
			return fmt.Errorf("%s.%s is not supported by the agent's rollouts controller (see docs/rollouts.md)", path, k)
		}
		if child, ok := f.children[k]; ok {
			if m, ok := obj[k].(map[string]any); ok {
				if err := child.check(path+"."+k, m); err != nil {
					return err
				}
			}
		}
		if each, ok := f.each[k]; ok {
			list, _ := obj[k].([]any)
			for i, item := range list {
				if m, ok := item.(map[string]any); ok {
					if err := each.check(fmt.Sprintf("%s.%s[%d]", path, k, i), m); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
