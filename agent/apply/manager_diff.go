package apply

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/flotilla-dev/flotilla/internal/ignore"
)

// Drift is an object whose live state differs from what applying it would
// make it. Live is nil when the object does not exist; Desired is the
// server's dry-run result (or the object itself when it cannot be dry-run
// yet: its namespace or kind is created by the same sync).
type Drift struct {
	Ref     ObjectRef
	Live    *unstructured.Unstructured
	Desired *unstructured.Unstructured
}

// Diff dry-runs every object, as a sync would, and returns those that would
// change, in order, leaving out the differences rules ignore (nil: none).
// Nothing is written. A dry-run the server refuses fails the diff with an
// error naming each object, as it would fail the sync; so does an object
// of a kind the server does not serve, unless a CRD among objs defines it
// (it is then a create).
func (m *Manager) Diff(ctx context.Context, objs []*unstructured.Unstructured, rules *ignore.Rules) ([]Drift, error) {
	live, err := m.Live(ctx, objs)
	if err != nil {
		return nil, err
	}
	defined := map[schema.GroupKind]bool{}
	for _, obj := range objs {
		if gk, ok := crdDefines(obj); ok {
			defined[gk] = true
		}
	}
	drifts := make([]*Drift, len(objs))
	errs := make([]error, len(objs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Concurrency)
	for i, obj := range objs {
		g.Go(func() error {
			ref := RefOf(obj)
			current := live[ref.Key()]
			ri, _, err := m.client(obj)
			if meta.IsNoMatchError(err) && defined[ref.GroupKind()] {
				drifts[i] = &Drift{Ref: ref, Desired: obj} // a kind this sync's CRD defines
				return nil
			}
			if err != nil {
				errs[i] = &ObjectError{Ref: ref, Action: "dry-run", Err: err}
				return nil
			}
			dry, err := ri.Apply(gctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
			// A controller may write the object between the read and the
			// dry-run (the dry-run then starts from a newer version): read
			// it again, so the two compared are of the same version and a
			// controller's write is never taken for drift.
			for try := 0; err == nil && current != nil && dry.GetResourceVersion() != current.GetResourceVersion() && try < raceRetries; try++ {
				if current, err = ri.Get(gctx, obj.GetName(), metav1.GetOptions{}); err != nil {
					break
				}
				dry, err = ri.Apply(gctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
			}
			if apierrors.IsNotFound(err) && current != nil {
				current, err = nil, nil // deleted meanwhile: it is missing
				dry = obj
			}
			switch {
			case apierrors.IsNotFound(err) && current == nil:
				drifts[i] = &Drift{Ref: ref, Desired: obj} // its namespace does not exist yet
			case err != nil:
				errs[i] = &ObjectError{Ref: ref, Action: "dry-run", Err: err}
			case current == nil || !sameIgnoring(current, dry, rules):
				drifts[i] = &Drift{Ref: ref, Live: current, Desired: dry}
			}
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	var out []Drift
	for _, d := range drifts {
		if d != nil {
			out = append(out, *d)
		}
	}
	return out, nil
}

// raceRetries bounds the re-reads of an object that changes between the
// read of its live state and its dry-run.
const raceRetries = 3

// sameIgnoring is sameObject after removing what rules ignore.
func sameIgnoring(live, dry *unstructured.Unstructured, rules *ignore.Rules) bool {
	if rules.Empty() {
		return sameObject(live, dry)
	}
	return sameObject(rules.Remove(live, live), rules.Remove(dry, live))
}
