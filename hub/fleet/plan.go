package fleet

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flotilla-dev/flotilla/hub/discovery"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/appspec"
)

// Kinds of group a plan releases.
const (
	KindApplicationSet = "ApplicationSet"
	KindApplication    = "Application"
)

// Plan is how the changes of one ApplicationSet or Application reach the
// fleet: waves of (cluster, app) keys, in order.
type Plan struct {
	Kind, Name   string
	Waves        []Wave
	AutoRollback bool
}

// ID is the plan's group, "<kind>/<name>": the key of its rollout's record.
func (p *Plan) ID() string { return p.Kind + "/" + p.Name }

// Wave is one wave of a plan.
type Wave struct {
	// Selector says which Applications or clusters the wave holds.
	Selector string
	// Keys are the wave's (cluster, app) keys, sorted.
	Keys []string
	// MaxUpdate bounds how many of the wave's targets are released at a
	// time: a number or a percentage of them; nil releases all.
	MaxUpdate *intstr.IntOrString
	// Manual is a wave released only when an operator promotes it: a
	// RollingSync step with maxUpdate 0, or what no step selects (Argo CD
	// leaves those to a manual sync).
	Manual bool
	Gate   appspec.WaveGate
}

// Plans returns the plan of every key that belongs to one, by key: the
// keys of the Applications an ApplicationSet with RollingSync or with the
// flotilla.dev/waves annotation generated, and of Applications with the
// annotation. clusters gives the labels clusterLabel waves order by.
func Plans(apps []*discovery.App, clusters []appspec.Cluster) map[string]*Plan {
	labels := map[string]map[string]string{}
	for _, c := range clusters {
		labels[c.Name] = c.Labels
	}
	sets := map[string][]*discovery.App{}
	setOf := map[string]*appspec.ApplicationSet{}
	var plans []*Plan
	for _, a := range apps {
		if set := a.Application.GeneratedBy; set != nil && (set.RollingSync() != nil || set.Waves != nil) {
			sets[set.Metadata.Name] = append(sets[set.Metadata.Name], a)
			setOf[set.Metadata.Name] = set
			continue
		}
		if w := a.Application.Waves; w != nil {
			plans = append(plans, labelPlan(KindApplication, a.Application.Metadata.Name, w, []*discovery.App{a}, labels))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		set := setOf[name]
		if steps := set.RollingSync(); steps != nil {
			plans = append(plans, stepPlan(set, steps, sets[name]))
		} else {
			plans = append(plans, labelPlan(KindApplicationSet, name, set.Waves, sets[name], labels))
		}
	}
	byKey := map[string]*Plan{}
	for _, p := range plans {
		for _, w := range p.Waves {
			for _, key := range w.Keys {
				byKey[key] = p
			}
		}
	}
	return byKey
}

// stepPlan is an ApplicationSet's RollingSync: a wave per step, holding
// the Applications whose labels the step selects first, then a manual wave
// of those no step selects.
func stepPlan(set *appspec.ApplicationSet, steps []appspec.RollingSyncStep, apps []*discovery.App) *Plan {
	waves := set.Waves
	if waves == nil {
		waves = &appspec.Waves{}
	}
	p := &Plan{Kind: KindApplicationSet, Name: set.Metadata.Name, AutoRollback: waves.AutoRollback}
	for i, st := range steps {
		p.Waves = append(p.Waves, Wave{Selector: describeStep(st), MaxUpdate: st.MaxUpdate, Manual: isZero(st.MaxUpdate), Gate: waves.Gate(i)})
	}
	unselected := Wave{Selector: "Applications no step selects (synced only when promoted)", Manual: true}
	for _, a := range apps {
		w := &unselected
		if i := appspec.StepOf(steps, a.Application.Metadata.Labels); i >= 0 {
			w = &p.Waves[i]
		}
		w.Keys = append(w.Keys, keysOf(a)...)
	}
	if len(unselected.Keys) > 0 {
		p.Waves = append(p.Waves, unselected)
	}
	return sortKeys(p)
}

// labelPlan orders the clusters of apps by the value of waves.clusterLabel
// (numerically when every value is a number), a wave per value, then a
// manual wave of the clusters without the label; with no clusterLabel,
// one wave holds every cluster.
func labelPlan(kind, name string, waves *appspec.Waves, apps []*discovery.App, labels map[string]map[string]string) *Plan {
	p := &Plan{Kind: kind, Name: name, AutoRollback: waves.AutoRollback}
	byValue := map[string][]string{}
	var unlabelled []string
	for _, a := range apps {
		for _, cluster := range a.Clusters {
			key := appkey.Join(cluster, a.Application.Metadata.Name)
			if waves.ClusterLabel == "" {
				byValue[""] = append(byValue[""], key)
			} else if v, ok := labels[cluster][waves.ClusterLabel]; ok {
				byValue[v] = append(byValue[v], key)
			} else {
				unlabelled = append(unlabelled, key)
			}
		}
	}
	for i, v := range sortValues(slices.Collect(maps.Keys(byValue))) {
		selector := "every cluster"
		if waves.ClusterLabel != "" {
			selector = waves.ClusterLabel + "=" + v
		}
		gate := waves.Gate(i)
		p.Waves = append(p.Waves, Wave{Selector: selector, Keys: byValue[v], MaxUpdate: gate.MaxUpdate, Manual: isZero(gate.MaxUpdate), Gate: gate})
	}
	if len(unlabelled) > 0 {
		p.Waves = append(p.Waves, Wave{Selector: "clusters without the " + waves.ClusterLabel + " label (synced only when promoted)", Keys: unlabelled, Manual: true})
	}
	return sortKeys(p)
}

func keysOf(a *discovery.App) []string {
	keys := make([]string, 0, len(a.Clusters))
	for _, c := range a.Clusters {
		keys = append(keys, appkey.Join(c, a.Application.Metadata.Name))
	}
	return keys
}

func sortKeys(p *Plan) *Plan {
	for i := range p.Waves {
		slices.Sort(p.Waves[i].Keys)
	}
	return p
}

// sortValues orders label values numerically when all are numbers,
// otherwise as strings.
func sortValues(values []string) []string {
	numbers := map[string]float64{}
	for _, v := range values {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			slices.Sort(values)
			return values
		}
		numbers[v] = n
	}
	slices.SortFunc(values, func(a, b string) int { return cmp.Compare(numbers[a], numbers[b]) })
	return values
}

// isZero reports a maxUpdate of 0 (or "0%"): Argo CD updates none of the
// step's Applications by itself.
func isZero(v *intstr.IntOrString) bool {
	if v == nil {
		return false
	}
	n, err := appspec.MaxUpdate(v, 100)
	return err == nil && n == 0
}

// describeStep renders a step's matchExpressions as a label selector.
func describeStep(st appspec.RollingSyncStep) string {
	var parts []string
	for _, e := range st.MatchExpressions {
		parts = append(parts, fmt.Sprintf("%s %s (%s)", e.Key, e.Operator, strings.Join(e.Values, ", ")))
	}
	if len(parts) == 0 {
		return "every Application"
	}
	return strings.Join(parts, ", ")
}
