package reconcile

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/agent/waves"
)

// pruneAndRecord prunes what left Git (the inventory's objects no longer
// among objs) and saves the inventory as applied. It returns the pruned
// and the kept objects' changes.
func (s *Syncer) pruneAndRecord(ctx context.Context, spec syncSpec, inv *inventory.Inventory, objs []*unstructured.Unstructured) ([]apply.Change, error) {
	current := apply.Refs(objs)
	gone := inventory.Diff(inv.Objects, current)
	_, span := tracer.Start(ctx, "agent.prune", trace.WithAttributes(attribute.Int("flotilla.candidates", len(gone))))
	changes, kept, err := s.prune(ctx, spec, gone)
	span.End()
	if err != nil {
		return changes, err
	}
	saved := &inventory.Inventory{App: spec.app, Objects: append(current, kept...), Applied: spec.applied}
	if err := s.deps.Inventories.Save(ctx, saved); err != nil {
		return changes, err
	}
	return changes, nil
}

// prune deletes the objects that left Git when automated prune is on and
// the object does not say Prune=false; the others are kept, as
// prune-skipped changes.
func (s *Syncer) prune(ctx context.Context, spec syncSpec, gone []apply.ObjectRef) (changes []apply.Change, kept []apply.ObjectRef, err error) {
	if len(gone) == 0 {
		return nil, nil, nil
	}
	live := map[string]*unstructured.Unstructured{}
	if spec.prune {
		// Prune=false is read from the live objects; a read that fails
		// keeps them (fails closed): nothing is deleted that might say no.
		if live, err = s.deps.Cluster.Live(ctx, apply.Objects(gone)); err != nil {
			return nil, nil, fmt.Errorf("prune: %w", err)
		}
	}
	var del []apply.ObjectRef
	for _, ref := range gone {
		if l := live[ref.Key()]; !spec.prune || (l != nil && objectOptionsOf(l).noPrune) {
			kept = append(kept, ref)
			changes = append(changes, apply.Change{Ref: ref, Action: apply.PruneSkipped, Message: "no longer in Git; prune is off for it"})
			continue
		}
		del = append(del, ref)
	}
	cs, err := s.deps.Cluster.DeleteAll(ctx, del, spec.options.prunePropagation)
	return append(changes, cs.Changes...), kept, err
}

// remove handles an application removed from Git: with cascade its
// objects are deleted, a wave at a time from the highest (Argo CD's
// reverse order), each wave gone before the next; objects marked
// Delete=false are left running. Without cascade all are orphaned
// (released, left running).
func (s *Syncer) remove(ctx context.Context, spec syncSpec) (syncResult, error) {
	inv, err := s.deps.Inventories.Load(ctx, spec.app)
	if err != nil {
		return syncResult{}, err
	}
	r := &removal{cascade: spec.deletion.GetCascade(), orphaned: len(inv.Objects)}
	res := syncResult{removal: r}
	if r.cascade {
		r.orphaned = 0
		if r.deleted, r.kept, err = s.deleteInWaves(ctx, inv.Objects); err != nil {
			return res, err
		}
	}
	return res, s.deps.Inventories.Delete(ctx, spec.app)
}

// deleteInWaves deletes refs in reverse wave order, as the live objects'
// sync-wave annotations say, waiting for each wave to be gone.
func (s *Syncer) deleteInWaves(ctx context.Context, refs []apply.ObjectRef) (deleted []apply.Change, kept int, err error) {
	live, err := s.deps.Cluster.Live(ctx, apply.Objects(refs))
	if err != nil {
		return nil, 0, err
	}
	byWave := map[int][]apply.ObjectRef{}
	for _, ref := range refs {
		wave := 0
		if obj := live[ref.Key()]; obj != nil {
			if objectOptionsOf(obj).noDelete {
				kept++
				continue
			}
			wave, _ = waves.Wave(obj)
		}
		byWave[wave] = append(byWave[wave], ref)
	}
	for _, wave := range slices.Backward(slices.Sorted(maps.Keys(byWave))) {
		cs, err := s.deps.Cluster.DeleteAll(ctx, byWave[wave], metav1.DeletePropagationBackground)
		deleted = append(deleted, cs.Changes...)
		if err != nil {
			return deleted, kept, err
		}
		if err := s.deps.Cluster.WaitDeleted(ctx, byWave[wave], s.opts.HealthTimeout); err != nil {
			return deleted, kept, fmt.Errorf("wave %d: %w", wave, err)
		}
	}
	return deleted, kept, nil
}
