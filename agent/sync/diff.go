package sync

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/diff"
	"github.com/flotilla-dev/flotilla/agent/inventory"
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
	ds := d.State
	if ds.GetDeletion() != nil {
		return ds.GetHistoryId(), nil, fmt.Errorf("%s was removed from Git (history %d)", app, ds.GetHistoryId())
	}
	objs, err := s.renderDesired(ctx, ds)
	if err != nil {
		return ds.GetHistoryId(), nil, err
	}
	rules, _, err := ignoreRules(ds, objs)
	if err != nil {
		return ds.GetHistoryId(), nil, err
	}
	drifts, err := s.manager.Diff(ctx, objs, rules)
	if err != nil {
		return ds.GetHistoryId(), nil, err
	}
	inv, err := s.inventory.Load(ctx, app)
	if err != nil {
		return ds.GetHistoryId(), nil, err
	}
	current := make([]apply.ObjectRef, len(objs))
	for i, o := range objs {
		current[i] = apply.RefOf(o)
	}
	if gone := inventory.Diff(inv.Objects, current); len(gone) > 0 {
		targets := make([]*unstructured.Unstructured, len(gone))
		for i, ref := range gone {
			targets[i] = refObject(ref)
		}
		live, err := s.manager.Live(ctx, targets)
		if err != nil {
			return ds.GetHistoryId(), nil, err
		}
		for _, ref := range gone {
			if obj := live[ref.Key()]; obj != nil {
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
			return ds.GetHistoryId(), nil, err
		}
		out = append(out, &flotillav1.ObjectDiff{Group: d.Ref.Group, Kind: d.Ref.Kind, Namespace: d.Ref.Namespace, Name: d.Ref.Name, Action: action, Diff: text})
	}
	return ds.GetHistoryId(), out, nil
}

// Rollouts are the live Argo Rollouts app manages (from its inventory).
func (s *Syncer) Rollouts(ctx context.Context, app string) ([]*unstructured.Unstructured, error) {
	inv, err := s.inventory.Load(ctx, app)
	if err != nil {
		return nil, err
	}
	var refs []*unstructured.Unstructured
	for _, ref := range inv.Objects {
		if ref.Group == "argoproj.io" && ref.Kind == "Rollout" {
			refs = append(refs, refObject(ref))
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s manages no Rollout in this cluster", app)
	}
	live, err := s.manager.Live(ctx, refs)
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
