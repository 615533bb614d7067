package rollouts

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Condition is one of a Rollout's status conditions, as Argo Rollouts
// writes them; the agent keeps the Progressing one.
type Condition struct {
	Type               string      `json:"type"`
	Status             string      `json:"status"`
	Reason             string      `json:"reason,omitempty"`
	Message            string      `json:"message,omitempty"`
	LastUpdateTime     metav1.Time `json:"lastUpdateTime"`
	LastTransitionTime metav1.Time `json:"lastTransitionTime"`
}

// The Progressing condition's reasons, as Argo Rollouts names them.
const (
	conditionProgressing     = "Progressing"
	reasonReplicaSetUpdated  = "ReplicaSetUpdated"
	reasonNewRSAvailable     = "NewReplicaSetAvailable"
	reasonPaused             = "RolloutPaused"
	reasonAborted            = "RolloutAborted"
	reasonDeadlineExceeded   = "ProgressDeadlineExceeded"
	defaultProgressDeadline  = 600 * time.Second
	progressDeadlineAbortMsg = "ProgressDeadlineExceeded: rollout aborted: "
)

// progress keeps the Progressing condition, as Argo Rollouts does: its
// lastUpdateTime moves whenever the rollout made progress (a new
// revision, a step, a change of its pods' counts); a rollout still
// Progressing progressDeadlineSeconds (default 600) after that is
// Degraded, ProgressDeadlineExceeded, and with progressDeadlineAbort it is
// aborted. A paused, healthy or aborted rollout is not timed.
func (r *rolloutCtx) progress() {
	old := r.ro.Status
	cond := r.condition(conditionProgressing)
	moved := cond == nil || old.CurrentPodHash != r.st.CurrentPodHash || old.StableRS != r.st.StableRS ||
		stepText(old.CurrentStepIndex) != stepText(r.st.CurrentStepIndex) || old.Replicas != r.st.Replicas ||
		old.UpdatedReplicas != r.st.UpdatedReplicas || old.ReadyReplicas != r.st.ReadyReplicas || old.AvailableReplicas != r.st.AvailableReplicas ||
		old.BlueGreen.ActiveSelector != r.st.BlueGreen.ActiveSelector
	switch {
	case r.st.Abort:
		r.setCondition("False", reasonAborted, r.st.Message)
	case r.st.Phase == PhaseHealthy:
		r.setCondition("True", reasonNewRSAvailable, fmt.Sprintf("Rollout %q has successfully progressed.", r.obj.GetName()))
	case r.st.Phase == PhasePaused:
		r.setCondition("Unknown", reasonPaused, "Rollout is paused")
	case r.st.Phase != PhaseProgressing:
		// Degraded for a reason of its own: nothing to time.
	case moved || cond.Reason == reasonPaused || cond.Reason == reasonNewRSAvailable:
		r.setCondition("True", reasonReplicaSetUpdated, fmt.Sprintf("ReplicaSet %q is progressing.", r.newRS.GetName()))
		r.wakeAt(r.now.Add(r.progressDeadline()))
	default:
		due := cond.LastUpdateTime.Add(r.progressDeadline())
		if r.now.Before(due) {
			r.wakeAt(due)
			return
		}
		msg := fmt.Sprintf("ReplicaSet %q has timed out progressing.", r.newRS.GetName())
		r.setCondition("False", reasonDeadlineExceeded, msg)
		if r.ro.Spec.ProgressDeadlineAbort && r.hash != r.st.StableRS {
			r.abort(progressDeadlineAbortMsg + msg)
			r.markAborted()
			return
		}
		r.st.Phase, r.st.Message = PhaseDegraded, reasonDeadlineExceeded+": "+msg
	}
}

// progressDeadline is spec.progressDeadlineSeconds, 600 s by default.
func (r *rolloutCtx) progressDeadline() time.Duration {
	if d := r.ro.Spec.ProgressDeadlineSeconds; d != nil && *d > 0 {
		return time.Duration(*d) * time.Second
	}
	return defaultProgressDeadline
}

func (r *rolloutCtx) condition(kind string) *Condition {
	for i := range r.st.Conditions {
		if r.st.Conditions[i].Type == kind {
			return &r.st.Conditions[i]
		}
	}
	return nil
}

// setCondition sets the Progressing condition; its lastUpdateTime moves
// when anything of it changes (or the rollout progressed, for
// ReplicaSetUpdated), its lastTransitionTime when its status does.
func (r *rolloutCtx) setCondition(status, reason, message string) {
	now := metav1.Time{Time: r.now.Truncate(time.Second)}
	c := r.condition(conditionProgressing)
	if c == nil {
		r.st.Conditions = append(r.st.Conditions, Condition{Type: conditionProgressing, Status: status, Reason: reason, Message: message,
			LastUpdateTime: now, LastTransitionTime: now})
		return
	}
	if c.Status != status {
		c.LastTransitionTime = now
	}
	if c.Status != status || c.Reason != reason || c.Message != message || reason == reasonReplicaSetUpdated {
		c.LastUpdateTime = now
	}
	c.Status, c.Reason, c.Message = status, reason, message
}

// rollbackWithinWindow reports whether the revision being rolled out is
// an earlier one within spec.rollbackWindow.revisions of the stable one,
// which Argo Rollouts fast-tracks (no steps, no analysis): its ReplicaSet
// is older than the stable one, with fewer than revisions ReplicaSets
// created between the two. Creation times have whole seconds; within one
// second the revision numbers order them.
func (r *rolloutCtx) rollbackWithinWindow() bool {
	w := r.ro.Spec.RollbackWindow
	if w == nil || w.Revisions <= 0 || r.stableRS == nil || r.newRS == nil || r.stableRS == r.newRS {
		return false
	}
	if !olderThan(r.newRS, r.stableRS) {
		return false
	}
	between := int32(0)
	for _, rs := range r.others {
		if olderThan(rs, r.stableRS) && olderThan(r.newRS, rs) {
			between++
		}
	}
	return between < w.Revisions
}

// olderThan orders ReplicaSets by creation, then by revision.
func olderThan(a, b *unstructured.Unstructured) bool {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return revisionOf(a) < revisionOf(b)
}
