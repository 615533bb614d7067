package rollouts

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// GVR is the Rollout resource.
var GVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// actionManager is the field manager of the patches operators' actions
// make, so a Rollout's managed fields say who paused or promoted it.
const actionManager = "flotilla-rollout-action"

// Act carries out an operator's action on one Rollout with the patches
// the kubectl-argo-rollouts plugin makes, so whichever rollouts controller
// runs in the cluster acts on it as it would on the plugin's:
//
//   - promote: unpause, and clear the pause conditions, or (mid-analysis,
//     no pause) move to the next canary step;
//   - promote --full: status.promoteFull, unless the rollout is already
//     on its stable version;
//   - abort: status.abort; retry: clears it; pause: spec.paused.
func Act(ctx context.Context, client dynamic.Interface, ro *unstructured.Unstructured, action flotillav1.RolloutAction, full bool) error {
	ri := client.Resource(GVR).Namespace(ro.GetNamespace())
	patch := func(body string, subresource ...string) error {
		_, err := ri.Patch(ctx, ro.GetName(), types.MergePatchType, []byte(body), metav1.PatchOptions{FieldManager: actionManager}, subresource...)
		if err != nil {
			return fmt.Errorf("rollout %s/%s: %w", ro.GetNamespace(), ro.GetName(), err)
		}
		return nil
	}
	switch action {
	case flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE:
		if err := promotable(ro, full); err != nil {
			return fmt.Errorf("rollout %s/%s: %w", ro.GetNamespace(), ro.GetName(), err)
		}
		if full {
			return patch(`{"status":{"promoteFull":true}}`, "status")
		}
		pauses, _, _ := unstructured.NestedSlice(ro.Object, "status", "pauseConditions")
		steps, _, _ := unstructured.NestedSlice(ro.Object, "spec", "strategy", "canary", "steps")
		switch {
		case len(pauses) > 0:
			if err := patch(`{"status":{"pauseConditions":null}}`, "status"); err != nil {
				return err
			}
		case len(steps) > 0:
			index, _, _ := unstructured.NestedInt64(ro.Object, "status", "currentStepIndex")
			if index < int64(len(steps)) {
				index++
			}
			if err := patch(fmt.Sprintf(`{"status":{"pauseConditions":null,"currentStepIndex":%d}}`, index), "status"); err != nil {
				return err
			}
		}
		if paused, _, _ := unstructured.NestedBool(ro.Object, "spec", "paused"); paused {
			return patch(`{"spec":{"paused":false}}`)
		}
		return nil
	case flotillav1.RolloutAction_ROLLOUT_ACTION_ABORT:
		return patch(`{"status":{"abort":true}}`, "status")
	case flotillav1.RolloutAction_ROLLOUT_ACTION_RETRY:
		return patch(`{"status":{"abort":false}}`, "status")
	case flotillav1.RolloutAction_ROLLOUT_ACTION_PAUSE:
		return patch(`{"spec":{"paused":true}}`)
	}
	return fmt.Errorf("unknown rollout action %v", action)
}

// promotable says why promoting ro would do nothing, or nil when it acts:
// a promote needs a rollout that runs (not InvalidSpec, not aborted: that
// needs a retry) and has something to promote: a pause to end, or a
// revision not yet stable (a canary's step to move past, with full all
// of them). The kubectl plugin patches regardless; the patch then changes
// nothing, which an operator at 2 am must be told.
func promotable(ro *unstructured.Unstructured, full bool) error {
	phase, _, _ := unstructured.NestedString(ro.Object, "status", "phase")
	message, _, _ := unstructured.NestedString(ro.Object, "status", "message")
	aborted, _, _ := unstructured.NestedBool(ro.Object, "status", "abort")
	current, _, _ := unstructured.NestedString(ro.Object, "status", "currentPodHash")
	stable, _, _ := unstructured.NestedString(ro.Object, "status", "stableRS")
	paused, _, _ := unstructured.NestedBool(ro.Object, "spec", "paused")
	pauses, _, _ := unstructured.NestedSlice(ro.Object, "status", "pauseConditions")
	_, canary, _ := unstructured.NestedMap(ro.Object, "spec", "strategy", "canary")
	switch {
	case strings.HasPrefix(message, "InvalidSpec"):
		return fmt.Errorf("cannot promote: the rollout does not run (%s)", message)
	case aborted:
		return fmt.Errorf("cannot promote: the rollout was aborted (%s); retry it to start the revision again", message)
	case paused || len(pauses) > 0:
		return nil
	case phase == PhaseDegraded:
		return fmt.Errorf("cannot promote: the rollout is Degraded (%s)", message)
	case current == "" || current == stable:
		return fmt.Errorf("cannot promote: nothing to promote, the rollout runs its stable revision %s", stable)
	case full || canary:
		return nil
	}
	return fmt.Errorf("cannot promote: the rollout is not paused (%s)", phase)
}
