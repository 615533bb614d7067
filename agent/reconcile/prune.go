package reconcile

import (
	"context"
	"errors"
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
// among objs) and saves the inventory: objs and what the prune kept. The
// desired state is recorded as applied only when the prune succeeded, so
// a failed one is tried again rather than taken for a no-op. inv is left
// as saved.
func (s *Syncer) pruneAndRecord(ctx context.Context, spec syncSpec, inv *inventory.Inventory, objs []*unstructured.Unstructured) (deletions, error) {
	current := apply.Refs(objs)
	gone := inventory.Diff(inv.Objects, current)
	_, span := tracer.Start(ctx, "agent.prune", trace.WithAttributes(attribute.Int("flotilla.candidates", len(gone))))
	pruned, err := s.prune(ctx, spec, gone)
	span.End()
	inv.Objects = append(current, pruned.kept...)
	if err == nil {
		inv.Applied = spec.applied
	}
	if saveErr := s.deps.Inventories.Save(ctx, inv); saveErr != nil {
		err = errors.Join(err, saveErr)
	}
	return pruned, err
}

// prune deletes the objects that left Git when automated prune is on and
// the object does not say Prune=false (the others are kept, as
// prune-skipped changes), and when app still owns them: mayDelete decides.
func (s *Syncer) prune(ctx context.Context, spec syncSpec, gone []apply.ObjectRef) (deletions, error) {
	if len(gone) == 0 {
		return deletions{}, nil
	}
	keep := func(live *unstructured.Unstructured) string {
		switch {
		case !spec.prune:
			return "no longer in Git; prune is off for it"
		case live != nil && objectOptionsOf(live).noPrune:
			return "no longer in Git; it says Prune=false"
		}
		return ""
	}
	pruned, err := s.deleteOwned(ctx, spec.app, "pruned", gone, keep, spec.options.prunePropagation)
	if err != nil {
		err = fmt.Errorf("prune: %w", err)
	}
	return pruned, err
}

// remove handles an application removed from Git, whose inventory is inv:
// with cascade its objects are deleted, a wave at a time from the highest
// (Argo CD's reverse order), each wave gone before the next; objects marked
// Delete=false are left running, and objects another application owns or
// wants now are left to it (mayDelete). Without cascade all are orphaned
// (released, left running). Once done, the inventory is replaced by the
// application's tombstone, which refuses its older entries.
func (s *Syncer) remove(ctx context.Context, spec syncSpec, inv *inventory.Inventory) (syncResult, error) {
	if err := s.accept(ctx, spec, inv); err != nil {
		return syncResult{}, err
	}
	s.forgetWants(spec.app)
	tombstone := inventory.Tombstone(spec.app, spec.historyID)
	if !spec.deletion.GetCascade() {
		return syncResult{removal: &removal{orphaned: len(inv.Objects)}}, s.deps.Inventories.Save(ctx, tombstone)
	}
	r, err := s.deleteInWaves(ctx, spec.app, inv.Objects)
	if err != nil {
		return syncResult{removal: r}, err
	}
	return syncResult{removal: r}, s.deps.Inventories.Save(ctx, tombstone)
}

// deleteInWaves deletes app's refs in reverse wave order, as the live
// objects' sync-wave annotations say, waiting for each wave to be gone,
// and returns what it did (so far, when it fails). Objects that cannot be
// read fail it before anything is deleted.
func (s *Syncer) deleteInWaves(ctx context.Context, app string, refs []apply.ObjectRef) (*removal, error) {
	r := &removal{cascade: true}
	live, err := s.deps.Cluster.Live(ctx, apply.Objects(refs))
	if err != nil {
		return r, fmt.Errorf("nothing was deleted: reading the objects to check their owner failed: %w", err)
	}
	byWave := map[int][]apply.ObjectRef{}
	for _, ref := range refs {
		wave := 0
		if obj := live[ref.Key()]; obj != nil {
			wave, _ = waves.Wave(obj)
		}
		byWave[wave] = append(byWave[wave], ref)
	}
	keep := func(live *unstructured.Unstructured) string {
		if live != nil && objectOptionsOf(live).noDelete {
			return "application removed from Git; it says Delete=false"
		}
		return ""
	}
	leftTo := map[string]bool{}
	for _, wave := range slices.Backward(slices.Sorted(maps.Keys(byWave))) {
		d, err := s.deleteOwned(ctx, app, "deleted", byWave[wave], keep, metav1.DeletePropagationBackground)
		var deleted []apply.ObjectRef
		for _, c := range d.changes {
			switch c.Action {
			case apply.Released:
				r.left = append(r.left, c)
			case apply.PruneSkipped:
				r.kept++
			default:
				r.deleted = append(r.deleted, c)
				if c.Action == apply.Pruned {
					deleted = append(deleted, c.Ref)
				}
			}
		}
		for _, a := range d.leftTo {
			leftTo[a] = true
		}
		r.leftTo = slices.Sorted(maps.Keys(leftTo))
		if err != nil {
			return r, err
		}
		if err := s.deps.Cluster.WaitDeleted(ctx, deleted, s.opts.HealthTimeout); err != nil {
			return r, fmt.Errorf("wave %d: %w", wave, err)
		}
	}
	return r, nil
}
