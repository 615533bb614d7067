package reconcile

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/diff"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/agent/waves"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Diff compares app's newest desired state with the live objects: what a
// sync would create or change (by server-side dry-run) and what it would
// prune (in the inventory, no longer rendered). It writes nothing.
func (s *Syncer) Diff(ctx context.Context, app string) (uint64, []*flotillav1.ObjectDiff, error) {
	w := s.worker(app)
	var d *Desired
	if w != nil {
		d = w.latest()
	}
	if d == nil {
		return 0, nil, fmt.Errorf("%s: no desired state received yet", app)
	}
	spec := newSyncSpec(d.State)
	if spec.deletion != nil {
		return spec.historyID, nil, fmt.Errorf("%s was removed from Git (history %d)", app, spec.historyID)
	}
	rendered, err := s.renderDesired(ctx, spec)
	if err != nil {
		return spec.historyID, nil, err
	}
	plan, err := waves.Build(rendered)
	if err != nil {
		return spec.historyID, nil, err
	}
	objs := plan.Resources // hooks run once per sync; they are not compared
	rules, _, err := ignoreRules(spec, objs)
	if err != nil {
		return spec.historyID, nil, err
	}
	drifts, err := s.deps.Cluster.Diff(ctx, objs, rules)
	if err != nil {
		return spec.historyID, nil, err
	}
	inv, err := s.deps.Inventories.Load(ctx, app)
	if err != nil {
		return spec.historyID, nil, err
	}
	if gone := inventory.Diff(inv.Objects, apply.Refs(objs)); len(gone) > 0 {
		live, err := s.deps.Cluster.Live(ctx, apply.Objects(gone))
		if err != nil {
			return spec.historyID, nil, err
		}
		for _, ref := range gone {
			// One another application took over is left to it (mayDelete).
			if obj := live[ref.Key()]; obj != nil && takenBy(app, obj) == "" {
				drifts = append(drifts, apply.Drift{Ref: ref, Live: obj})
			}
		}
	}
	out := make([]*flotillav1.ObjectDiff, 0, len(drifts))
	for _, d := range drifts {
		action := "update"
		switch {
		case d.Live == nil:
			action = "create"
		case d.Desired == nil:
			action = "prune"
		}
		text, err := diff.Object(d.Ref.String(), d.Live, d.Desired)
		if err != nil {
			return spec.historyID, nil, err
		}
		out = append(out, &flotillav1.ObjectDiff{Group: d.Ref.Group, Kind: d.Ref.Kind, Namespace: d.Ref.Namespace, Name: d.Ref.Name, Action: action, Diff: text})
	}
	return spec.historyID, out, nil
}

// Rollouts are the live Argo Rollouts app manages (from its inventory).
func (s *Syncer) Rollouts(ctx context.Context, app string) ([]*unstructured.Unstructured, error) {
	inv, err := s.deps.Inventories.Load(ctx, app)
	if err != nil {
		return nil, err
	}
	var refs []*unstructured.Unstructured
	for _, ref := range inv.Objects {
		if ref.Group == "argoproj.io" && ref.Kind == "Rollout" {
			refs = append(refs, ref.Object())
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s manages no Rollout in this cluster", app)
	}
	live, err := s.deps.Cluster.Live(ctx, refs)
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(refs))
	for _, r := range refs {
		if o := live[apply.RefOf(r).Key()]; o != nil {
			out = append(out, o)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the Rollouts of %s do not exist (yet)", app)
	}
	return out, nil
}
