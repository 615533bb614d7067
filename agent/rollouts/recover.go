package rollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// errReconcilePanicked is what recoverReconcile returns for a reconcile
// that panicked; the panic and its stack are already logged.
var errReconcilePanicked = errors.New("rollout reconcile panicked")

// internalErrorMessage is the status message of a Rollout whose reconcile
// panicked. It says no more than that: the panic's value may hold anything
// the rollout, its analysis or its Secrets held, so it goes to the log
// only.
const internalErrorMessage = "InternalError: the rollouts controller failed on this rollout and will retry; the agent's log has the details"

// reconcileFunc is the shape of Controller.Reconcile.
type reconcileFunc func(ctx context.Context, namespace, name string) (time.Duration, error)

// recoverReconcile runs reconcile for the Rollout key so that a panic in
// it stays with that Rollout: the panic is logged with its stack, the
// Rollout's status says Degraded with internalErrorMessage, and the
// result is errReconcilePanicked, which the worker requeues with rate
// limit. The agent and every other Rollout go on.
func (c *Controller) recoverReconcile(ctx context.Context, key cache.ObjectName, reconcile reconcileFunc) (after time.Duration, err error) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		c.log.Error("rollout reconcile panicked", "namespace", key.Namespace, "rollout", key.Name,
			"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		if err := c.markInternalError(ctx, key); err != nil {
			c.log.Error("rollout", "namespace", key.Namespace, "rollout", key.Name, "error", err)
		}
		after, err = 0, errReconcilePanicked
	}()
	return reconcile(ctx, key.Namespace, key.Name)
}

// markInternalError sets the Rollout's status to Degraded with
// internalErrorMessage (no write when it says so already), keeping the
// rest of its status, and tells OnChange. It runs in recoverReconcile's
// deferred function, where a panic would not be recovered again, so a
// panic here (OnChange's) becomes its error.
func (c *Controller) markInternalError(ctx context.Context, key cache.ObjectName) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rollout %s/%s status: panic: %v\n%s", key.Namespace, key.Name, p, debug.Stack())
		}
	}()
	ri := c.client.Resource(GVR).Namespace(key.Namespace)
	obj, err := ri.Get(ctx, key.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rollout %s/%s status: %w", key.Namespace, key.Name, err)
	}
	phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
	message, _, _ := unstructured.NestedString(obj.Object, "status", "message")
	if phase == PhaseDegraded && message == internalErrorMessage {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"phase": PhaseDegraded, "message": internalErrorMessage}})
	if err != nil {
		return err
	}
	updated, err := ri.Patch(ctx, key.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if err != nil {
		return fmt.Errorf("rollout %s/%s status: %w", key.Namespace, key.Name, err)
	}
	if c.opts.OnChange != nil {
		c.opts.OnChange(updated)
	}
	return nil
}
