package rollouts

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// managedByAnnotation marks a Service whose selector a rollout drives.
const managedByAnnotation = "argo-rollouts.argoproj.io/managed-by-rollouts"

// pointService points the Service's selector at the pods of hash (no write
// when it already does). The selector's other keys stay as Git set them.
func (r *rolloutCtx) pointService(ctx context.Context, name, hash string) error {
	if name == "" || hash == "" {
		return nil
	}
	svc, err := r.c.client.Resource(svcGVR).Namespace(r.obj.GetNamespace()).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the Service %q does not exist", name)
	}
	if err != nil {
		return err
	}
	current, _, _ := unstructured.NestedString(svc.Object, "spec", "selector", HashLabel)
	if current == hash && svc.GetAnnotations()[managedByAnnotation] == r.obj.GetName() {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{managedByAnnotation: r.obj.GetName()}},
		"spec":     map[string]any{"selector": map[string]any{HashLabel: hash}},
	})
	_, err = r.c.client.Resource(svcGVR).Namespace(r.obj.GetNamespace()).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	if err != nil {
		return fmt.Errorf("patch Service %s: %w", name, err)
	}
	return nil
}

// setWeight gives the canary Service weight percent of the HTTPRoute's
// traffic and the stable Service the rest, in every rule that sends to
// them, as Argo Rollouts' Gateway API plugin does.
func (route *GatewayRoute) setWeight(ctx context.Context, r *rolloutCtx, c *Canary, weight int32) error {
	canary, stable := c.CanaryService, c.StableService
	ns := route.Namespace
	if ns == "" {
		ns = r.obj.GetNamespace()
	}
	ri := r.c.client.Resource(httpRoutes).Namespace(ns)
	obj, err := ri.Get(ctx, route.HTTPRoute, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("HTTPRoute %s/%s: %w", ns, route.HTTPRoute, err)
	}
	var hr gatewayv1.HTTPRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &hr); err != nil {
		return fmt.Errorf("HTTPRoute %s/%s: %w", ns, route.HTTPRoute, err)
	}
	// The route is read through Gateway API's types and written back as it
	// was but for the weights, so fields those types do not know survive.
	rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
	changed, found := false, false
	for i, rule := range hr.Spec.Rules {
		for j, backend := range rule.BackendRefs {
			ref := backend.BackendRef
			if ref.Kind != nil && *ref.Kind != "Service" {
				continue
			}
			var want int32
			switch string(ref.Name) {
			case canary:
				want = weight
			case stable:
				want = 100 - weight
			default:
				continue
			}
			found = true
			if ref.Weight == nil || *ref.Weight != want {
				refs, _ := rules[i].(map[string]any)["backendRefs"].([]any)
				refs[j].(map[string]any)["weight"] = int64(want)
				changed = true
			}
		}
	}
	if !found {
		return fmt.Errorf("HTTPRoute %s/%s has no backendRef to %s or %s", ns, route.HTTPRoute, canary, stable)
	}
	if !changed {
		return nil
	}
	if err := unstructured.SetNestedSlice(obj.Object, rules, "spec", "rules"); err != nil {
		return err
	}
	if _, err := ri.Update(ctx, obj, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("HTTPRoute %s/%s: %w", ns, route.HTTPRoute, err)
	}
	return nil
}
