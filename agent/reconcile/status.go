package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// syncResult is what one sync did, step by step; statusOf turns it into
// the application's status.
type syncResult struct {
	// objects are what the application consists of now: the rendered
	// objects, or the inventory's for a no-op.
	objects []*unstructured.Unstructured
	// applied are the changes of the apply (and its dry-run), in order.
	applied []apply.Change
	// pruned are the objects that left Git: deleted, kept (prune-skipped),
	// or left to another application (released); leftTo names those
	// applications.
	pruned []apply.Change
	leftTo []string
	// ran names the waves and hooks of a plan that ran.
	ran []string
	// warnings are the desired state's (fields Flotilla does not act on)
	// and ignoreDifferences entries that matched no object.
	warnings []string
	// health is the objects' health after the sync (nil: not read).
	health *observed
	// noop: the desired state was applied before, nothing was written;
	// previous is the status reported for it then, when there is one.
	noop     bool
	previous *flotillav1.AppStatus
	// removal is what removing the application from the cluster did.
	removal *removal
	// duplicate: the deletion was carried out before (the inventory is its
	// tombstone); nothing was done, and nothing is reported.
	duplicate bool
}

// removal is the result of an application removed from Git.
type removal struct {
	cascade bool
	deleted []apply.Change
	// left are the objects left to other applications, which own or want
	// them now (released), and leftTo names those applications.
	left   []apply.Change
	leftTo []string
	// kept counts the objects left running (Delete=false), orphaned those
	// released without cascade.
	kept, orphaned int
}

// failure is why a sync failed and what happens next.
type failure struct {
	err     error
	attempt int64         // earlier failed attempts of the same desired state
	retryIn time.Duration // 0: no retry
	now     time.Time
}

// noopMessage is the status message of a desired state applied before.
const noopMessage = "already applied"

// statusOf is the one place an application's status is made: from what the
// sync did (res) and, when it failed, why (f.err).
func statusOf(spec syncSpec, res syncResult, f failure) *flotillav1.AppStatus {
	st := &flotillav1.AppStatus{SchemaVersion: 1, Cluster: spec.cluster, App: spec.app, Revision: spec.revision, HistoryId: spec.historyID}
	for _, c := range res.applied {
		st.Resources = append(st.Resources, resourceStatus(c, syncStatusOf(c)))
	}
	for _, c := range res.pruned {
		st.Resources = append(st.Resources, resourceStatus(c, syncStatusOf(c)))
	}
	if res.removal != nil {
		for _, c := range append(res.removal.deleted, res.removal.left...) {
			st.Resources = append(st.Resources, resourceStatus(c, syncStatusOf(c)))
		}
	}
	if f.err != nil {
		st.Phase, st.SyncStatus, st.Health = flotillav1.SyncPhase_SYNC_PHASE_FAILED, flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC, flotillav1.HealthStatus_HEALTH_STATUS_UNKNOWN
		st.Message = f.err.Error()
		st.Resources = append(st.Resources, notApplied(st.Resources, res.objects, f.err)...)
		limit := spec.retry.GetLimit()
		switch {
		case f.retryIn > 0:
			at := f.now.Add(f.retryIn)
			st.Retry = &flotillav1.RetryStatus{Attempt: f.attempt + 1, Limit: limit, NextAttemptAt: timestamppb.New(at)}
			st.Message += fmt.Sprintf(" (attempt %d%s failed; retrying at %s)", f.attempt+1, limitText(limit), at.UTC().Format(time.TimeOnly))
		case f.attempt > 0:
			st.Retry = &flotillav1.RetryStatus{Attempt: f.attempt + 1, Limit: limit}
			st.Message += fmt.Sprintf(" (attempt %d%s failed; no retries left)", f.attempt+1, limitText(limit))
		}
		return st
	}
	st.Phase, st.SyncStatus = flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED, flotillav1.SyncStatus_SYNC_STATUS_SYNCED
	switch {
	case res.removal != nil:
		st.Health, st.Message = flotillav1.HealthStatus_HEALTH_STATUS_MISSING, res.removal.message()
		return st
	case res.noop:
		st.Message = noopMessage
		if len(res.warnings) > 0 {
			st.Message += "; warning: " + strings.Join(res.warnings, "; ")
		}
		if res.previous != nil {
			st.Health, st.Resources, st.Rollouts = res.previous.GetHealth(), res.previous.GetResources(), res.previous.GetRollouts()
			st.WaveAnalysis = res.previous.GetWaveAnalysis()
			return st
		}
	default:
		if slices.ContainsFunc(res.pruned, func(c apply.Change) bool { return c.Action == apply.PruneSkipped }) {
			st.SyncStatus = flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		}
		st.Message = summary(res.applied, res.pruned, res.leftTo)
		if len(res.ran) > 0 {
			st.Message += "; ran " + strings.Join(res.ran, ", ")
		}
		if len(res.warnings) > 0 {
			st.Message += "; warning: " + strings.Join(res.warnings, "; ")
		}
	}
	if res.health == nil {
		st.Health = flotillav1.HealthStatus_HEALTH_STATUS_UNKNOWN
		return st
	}
	return withHealth(st, res.objects, res.health)
}

// notApplied are the resource statuses of the objects of a failed sync
// that it did not reach (listed has those it did): each is out of sync,
// "failed" with its own error when the failure names it, else "not
// applied" and why.
func notApplied(listed []*flotillav1.ResourceStatus, objs []*unstructured.Unstructured, err error) []*flotillav1.ResourceStatus {
	seen := make(map[string]bool, len(listed))
	for _, r := range listed {
		seen[refOfStatus(r).Key()] = true
	}
	own := map[string]string{}
	for _, oe := range failedObjects(err) {
		own[oe.Ref.Key()] = oe.Error()
	}
	var out []*flotillav1.ResourceStatus
	for _, o := range objs {
		ref := apply.RefOf(o)
		if seen[ref.Key()] {
			continue
		}
		seen[ref.Key()] = true
		msg, ok := own[ref.Key()]
		if !ok {
			msg = "not applied: the sync failed before writing it"
		}
		out = append(out, resourceStatus(apply.Change{Ref: ref, Action: apply.Failed, Message: msg}, flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC))
	}
	return out
}

// failedObjects are the *apply.ObjectError in err's tree.
func failedObjects(err error) []*apply.ObjectError {
	var out []*apply.ObjectError
	var walk func(error)
	walk = func(e error) {
		if oe, ok := e.(*apply.ObjectError); ok {
			out = append(out, oe)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			if c := u.Unwrap(); c != nil {
				walk(c)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

func (r *removal) message() string {
	if !r.cascade {
		return fmt.Sprintf("application removed from Git: %d objects orphaned (no resources finalizer)", r.orphaned)
	}
	msg := fmt.Sprintf("application removed from Git: %d objects deleted", len(r.deleted))
	if r.kept > 0 {
		msg += fmt.Sprintf(", %d left running (Delete=false)", r.kept)
	}
	if len(r.left) > 0 {
		msg += ", " + leftText(len(r.left), r.leftTo)
	}
	return msg
}

// leftText is "n left to app b" (or "to apps b, c"): objects not deleted
// because the applications named own or want them now.
func leftText(n int, apps []string) string {
	if len(apps) == 1 {
		return fmt.Sprintf("%d left to app %s", n, apps[0])
	}
	return fmt.Sprintf("%d left to apps %s", n, strings.Join(apps, ", "))
}

// withHealth is st with the health of every object in its resources
// (adding the ones st does not list yet) and the application's overall
// health and Rollouts. While an object is not healthy, its resource
// message says why. st is not changed.
func withHealth(st *flotillav1.AppStatus, objs []*unstructured.Unstructured, obs *observed) *flotillav1.AppStatus {
	st = proto.Clone(st).(*flotillav1.AppStatus)
	st.Health, st.Rollouts = obs.Overall, obs.rollouts
	byKey := make(map[string]*flotillav1.ResourceStatus, len(st.Resources))
	for _, r := range st.Resources {
		byKey[refOfStatus(r).Key()] = r
	}
	for i, o := range objs {
		ref := apply.RefOf(o)
		r, ok := byKey[ref.Key()]
		if !ok {
			r = resourceStatus(apply.Change{Ref: ref, Action: apply.Unchanged}, flotillav1.SyncStatus_SYNC_STATUS_SYNCED)
			st.Resources = append(st.Resources, r)
			byKey[ref.Key()] = r
		}
		r.Health = obs.Objects[i]
		switch {
		case r.GetAction() == string(apply.Failed):
			// keep the failure
		case r.Health == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY:
			r.Message = ""
		default:
			r.Message = obs.Message[i]
		}
	}
	return st
}

// withWaveAnalysis is st reporting wa as the analysis of its desired
// state's fleet wave (none when wa is nil). st is not changed.
func withWaveAnalysis(st *flotillav1.AppStatus, wa *flotillav1.WaveAnalysisStatus) *flotillav1.AppStatus {
	st = proto.Clone(st).(*flotillav1.AppStatus)
	st.WaveAnalysis = wa
	return st
}

func syncStatusOf(c apply.Change) flotillav1.SyncStatus {
	if c.Action == apply.Failed || c.Action == apply.PruneSkipped {
		return flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
	}
	return flotillav1.SyncStatus_SYNC_STATUS_SYNCED
}

func resourceStatus(c apply.Change, sync flotillav1.SyncStatus) *flotillav1.ResourceStatus {
	return &flotillav1.ResourceStatus{Group: c.Ref.Group, Version: c.Ref.Version, Kind: c.Ref.Kind, Namespace: c.Ref.Namespace, Name: c.Ref.Name,
		SyncStatus: sync, Action: string(c.Action), Message: c.Message}
}

// refOfStatus is the object a resource status is about.
func refOfStatus(r *flotillav1.ResourceStatus) apply.ObjectRef {
	return apply.ObjectRef{Group: r.GetGroup(), Version: r.GetVersion(), Kind: r.GetKind(), Namespace: r.GetNamespace(), Name: r.GetName()}
}

func summary(applied, pruned []apply.Change, leftTo []string) string {
	counts := map[apply.Action]int{}
	for _, c := range applied {
		counts[c.Action]++
	}
	gone := map[apply.Action]int{}
	for _, c := range pruned {
		gone[c.Action]++
	}
	msg := fmt.Sprintf("%d created, %d configured, %d unchanged, %d pruned", counts[apply.Created], counts[apply.Configured], counts[apply.Unchanged], gone[apply.Pruned])
	if kept := gone[apply.PruneSkipped]; kept > 0 {
		msg += fmt.Sprintf(", %d need pruning", kept)
	}
	if left := gone[apply.Released]; left > 0 {
		msg += ", " + leftText(left, leftTo)
	}
	return msg
}

// limitText is " of N" for the N attempts a retry limit allows (the first
// and limit retries), or "" when unlimited.
func limitText(limit int64) string {
	if limit < 0 {
		return ""
	}
	return fmt.Sprintf(" of %d", limit+1)
}
