package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/waves"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// verdict is what mayDelete decided for one object.
type verdict struct {
	// allowed: the application may delete the object.
	allowed bool
	// leftTo names the application the object is left to. With taken,
	// its AppLabel names that application already and the object leaves
	// this application's inventory; without, that application's desired
	// state wants it and it stays in the inventory until taken over.
	leftTo string
	taken  bool
	// kept says why the application keeps an object it still owns.
	kept string
	// err says why the object's owner is unknown: it is kept, and the
	// sync fails.
	err error
}

// mayDelete is the one decision of whether app may delete an object of its
// inventory it no longer wants (a prune, or the cascade of its removal),
// from the object's live state (nil: gone) or the error reading it.
// Ownership comes first, whatever app's own policy says: an object whose
// AppLabel names another application is that application's. Then app's
// policy: keep says why it keeps the object ("" when it does not). Last,
// an object another application's desired state wants (wantedBy, asked
// only then) is left to it. It fails closed: an object whose owner cannot
// be told is not deleted.
func mayDelete(app string, live *unstructured.Unstructured, readErr error, keep string, wantedBy func() (string, error)) verdict {
	switch {
	case readErr != nil && keep != "":
		return verdict{kept: keep} // not deleted either way
	case readErr != nil:
		return verdict{err: fmt.Errorf("reading it to check its owner failed: %w", readErr)}
	case live == nil:
		return verdict{allowed: true} // gone already
	}
	if owner := takenBy(app, live); owner != "" {
		return verdict{leftTo: owner, taken: true}
	}
	if keep != "" {
		return verdict{kept: keep}
	}
	other, err := wantedBy()
	switch {
	case err != nil:
		return verdict{err: err}
	case other != "":
		return verdict{leftTo: other}
	}
	return verdict{allowed: true}
}

// takenBy names the application other than app that the AppLabel of live
// (not nil) names: the one that owns the object now. "" when there is none.
func takenBy(app string, live *unstructured.Unstructured) string {
	if owner := live.GetLabels()[AppLabel]; owner != appkey.LabelValue(app) {
		return owner
	}
	return ""
}

// deletions is what deleteOwned did.
type deletions struct {
	// changes are one per object: deleted (pruned), failed, kept
	// (prune-skipped) or left to another application (released).
	changes []apply.Change
	// kept are the objects that stay in the application's inventory: kept,
	// failed, or left to an application that has not taken them yet.
	kept []apply.ObjectRef
	// leftTo are the applications objects were left to, sorted.
	leftTo []string
}

// deleteRounds is how many times deleteOwned reads, decides and deletes an
// object that changes in between, before it gives up on it for this sync.
const deleteRounds = 3

// deleteOwned deletes those of refs that app may delete (mayDelete; keep is
// app's policy for a live object), each only while it is as read
// (apply.IfUnchanged), so an object another application takes over
// between the read and the delete is not deleted: one that changed is
// read and decided again. verb ("pruned", "deleted") words the changes.
// The error joins every failure; objects that failed stay in the
// inventory.
func (s *Syncer) deleteOwned(ctx context.Context, app, verb string, refs []apply.ObjectRef, keep func(*unstructured.Unstructured) string, policy metav1.DeletionPropagation) (deletions, error) {
	all := refs
	var wants map[string]string
	var wantsErr error
	asked := false
	wantedBy := func(ref apply.ObjectRef) (string, error) {
		if !asked {
			wants, wantsErr = s.wantedElsewhere(ctx, app, all)
			asked = true
		}
		return wants[ref.Key()], wantsErr
	}
	var d deletions
	var errs []error
	reported := map[string]bool{}
	failed := func(ref apply.ObjectRef, err error) {
		d.changes = append(d.changes, apply.Change{Ref: ref, Action: apply.Failed, Message: fmt.Sprintf("not %s: %v", verb, err)})
		d.kept = append(d.kept, ref)
		if !reported[err.Error()] { // one cause for many objects is told once
			reported[err.Error()] = true
			errs = append(errs, fmt.Errorf("not %s: %w", verb, err))
		}
	}
	leftTo := map[string]bool{}
	for round := 1; len(refs) > 0; round++ {
		live, readErr := s.deps.Cluster.Live(ctx, apply.Objects(refs))
		var del []apply.ObjectRef
		for _, ref := range refs {
			l := live[ref.Key()]
			v := mayDelete(app, l, readErr, keep(l), func() (string, error) { return wantedBy(ref) })
			switch {
			case v.allowed:
				del = append(del, ref)
			case v.err != nil:
				failed(ref, v.err)
			case v.taken:
				leftTo[v.leftTo] = true
				d.changes = append(d.changes, apply.Change{Ref: ref, Action: apply.Released,
					Message: fmt.Sprintf("not %s: left to app %s, which owns it now (its %s label names %[2]s)", verb, v.leftTo, AppLabel)})
			case v.leftTo != "":
				leftTo[v.leftTo] = true
				d.changes = append(d.changes, apply.Change{Ref: ref, Action: apply.Released,
					Message: fmt.Sprintf("not %s: left to app %s, whose desired state includes it", verb, v.leftTo)})
				d.kept = append(d.kept, ref)
			default:
				d.changes = append(d.changes, apply.Change{Ref: ref, Action: apply.PruneSkipped, Message: v.kept})
				d.kept = append(d.kept, ref)
			}
		}
		refs = nil
		if len(del) == 0 {
			break
		}
		cs, err := s.deps.Cluster.DeleteAll(ctx, del, policy, apply.IfUnchanged(live))
		again := map[string]bool{}
		for _, e := range objectErrors(err) {
			var oe *apply.ObjectError
			if errors.As(e, &oe) && errors.Is(e, apply.ErrChanged) && round < deleteRounds {
				again[oe.Ref.Key()] = true
				continue
			}
			errs = append(errs, e)
		}
		for _, c := range cs.Changes {
			switch {
			case again[c.Ref.Key()]:
				refs = append(refs, c.Ref) // read and decide again
			case c.Action == apply.Failed:
				d.changes = append(d.changes, c)
				d.kept = append(d.kept, c.Ref)
			default:
				d.changes = append(d.changes, c)
			}
		}
	}
	d.leftTo = slices.Sorted(maps.Keys(leftTo))
	return d, errors.Join(errs...)
}

// objectErrors are the errors err joins (err itself when it joins none).
func objectErrors(err error) []error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return joined.Unwrap()
	}
	return []error{err}
}

// wanted is what one desired state of an application includes.
type wanted struct {
	historyID uint64
	// keys are its resources (not its hooks), by ObjectRef.Key.
	keys map[string]bool
}

// want records that spec's application, at spec's history id, includes
// objs, for the other applications' prunes (wantedElsewhere). An older
// history id than the one recorded is not recorded.
func (s *Syncer) want(spec syncSpec, objs []*unstructured.Unstructured) wanted {
	w := wanted{historyID: spec.historyID, keys: make(map[string]bool, len(objs))}
	for _, o := range objs {
		w.keys[apply.RefOf(o).Key()] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.wants[spec.app]; !ok || prev.historyID <= w.historyID {
		s.wants[spec.app] = w
	}
	return w
}

// forgetWants drops what a removed application wanted.
func (s *Syncer) forgetWants(app string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.wants, app)
}

// wantedElsewhere names, for each of refs that another application of the
// cluster wants, that application: one whose newest desired state
// includes the object. That state need not be applied yet, so an object
// moved from one application to another in one commit is left to the
// other even when the one it left syncs first, as long as the other's
// desired state has arrived. A newest state not rendered yet is rendered
// here (once, however many ask). The error names an application whose
// desired state could not be rendered: then who wants what is unknown.
func (s *Syncer) wantedElsewhere(ctx context.Context, app string, refs []apply.ObjectRef) (map[string]string, error) {
	s.mu.Lock()
	others := make(map[string]*appWorker, len(s.apps))
	for name, w := range s.apps {
		if name != app {
			others[name] = w
		}
	}
	s.mu.Unlock()
	out := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(others)) {
		d := others[name].latest()
		if d == nil || d.State.GetDeletion() != nil {
			continue // a removed application wants nothing
		}
		w, err := s.wantsOf(ctx, name, d.State)
		if err != nil {
			return nil, err
		}
		for _, ref := range refs {
			if key := ref.Key(); w.keys[key] && out[key] == "" {
				out[key] = name
			}
		}
	}
	return out, nil
}

// wantsOf is what app's desired state ds includes: recorded by its own
// sync, or rendered now.
func (s *Syncer) wantsOf(ctx context.Context, app string, ds *flotillav1.DesiredState) (wanted, error) {
	s.mu.Lock()
	w, ok := s.wants[app]
	s.mu.Unlock()
	if ok && w.historyID >= ds.GetHistoryId() {
		return w, nil
	}
	v, err, _ := s.rendering.Do(fmt.Sprintf("%s/%d", app, ds.GetHistoryId()), func() (any, error) {
		spec := newSyncSpec(ds)
		var objs []*unstructured.Unstructured
		// A panic on the other application's input fails this question,
		// not the agent.
		err := s.recovered(app, "rendering it to tell which objects it wants", func() error {
			rendered, err := s.renderDesired(ctx, spec)
			if err != nil {
				return err
			}
			plan, err := waves.Build(rendered)
			if err != nil {
				return err
			}
			objs = plan.Resources
			return nil
		})
		if err != nil {
			return wanted{}, err
		}
		return s.want(spec, objs), nil
	})
	if err != nil {
		return wanted{}, fmt.Errorf("which objects app %s wants is unknown (rendering history %d failed: %w)", app, ds.GetHistoryId(), err)
	}
	return v.(wanted), nil
}
