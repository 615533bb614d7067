package rollouts

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/cache"
)

// Annotations Argo Rollouts puts on ReplicaSets.
const (
	revisionAnnotation  = "rollout.argoproj.io/revision"
	scaleDownAnnotation = "argo-rollouts.argoproj.io/scale-down-deadline"
)

// podHash is the pod-template hash of a template: stable for the same
// template, so an agent restart finds the same ReplicaSet.
func podHash(template map[string]any) string {
	data, _ := json.Marshal(template) // map keys are sorted
	h := fnv.New32a()
	_, _ = h.Write(data)
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// podTemplate is the rollout's pod template, from its spec or from the
// Deployment its workloadRef names. A Rollout with a workloadRef and no
// selector takes the Deployment's, as in Argo Rollouts; neither is
// written back to the Rollout.
func (r *rolloutCtx) podTemplate(ctx context.Context) (map[string]any, error) {
	ref := r.ro.Spec.WorkloadRef
	key := cache.ObjectName{Namespace: r.obj.GetNamespace(), Name: r.obj.GetName()}
	if ref == nil {
		r.c.referWorkload(key, "")
		r.st.WorkloadObservedGeneration = ""
		return r.ro.Spec.Template, nil
	}
	r.c.referWorkload(key, ref.Name)
	d, err := r.c.client.Resource(deployGVR).Namespace(r.obj.GetNamespace()).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("spec.workloadRef: Deployment %s: %w", ref.Name, err)
	}
	t, ok, _ := unstructured.NestedMap(d.Object, "spec", "template")
	if !ok {
		return nil, fmt.Errorf("spec.workloadRef: Deployment %s has no pod template", ref.Name)
	}
	if r.ro.Spec.Selector == nil {
		raw, _, _ := unstructured.NestedMap(d.Object, "spec", "selector")
		var selector metav1.LabelSelector
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &selector); err != nil || len(raw) == 0 {
			return nil, fmt.Errorf("spec.workloadRef: Deployment %s has no usable spec.selector", ref.Name)
		}
		r.ro.Spec.Selector = &selector
	}
	r.workload = d
	r.st.WorkloadObservedGeneration = strconv.FormatInt(d.GetGeneration(), 10)
	return t, nil
}

// workloadReplicas is what scaleDown makes of the workloadRef's
// Deployment, and whether it touches it now: with onsuccess zero once the
// Rollout was Healthy (wasHealthy, as an earlier reconcile recorded it);
// with progressively replicas less the Rollout's ready pods while those
// come up or it was aborted (so the Deployment comes back up when they
// go), and zero once it was Healthy.
func workloadReplicas(mode string, wasHealthy bool, replicas, ready int32, aborted bool) (int32, bool) {
	switch {
	case mode != scaleDownOnSuccess && mode != scaleDownProgressively:
		return 0, false
	case wasHealthy:
		return 0, true
	case mode == scaleDownProgressively && (ready > 0 || aborted):
		return max(replicas-ready, 0), true
	}
	return 0, false
}

// scaleDownWorkload scales the workloadRef's Deployment down as its
// scaleDown says, for the Rollout's first revision only, as Argo Rollouts
// does: onsuccess to zero once the Rollout was Healthy; progressively to
// spec.replicas less the Rollout's ready pods while it comes up (so back
// up when they go), and to zero once it was Healthy. The Deployment's
// spec.replicas is the controller's from then on (see ControllerFields).
func (r *rolloutCtx) scaleDownWorkload(ctx context.Context) error {
	ref := r.ro.Spec.WorkloadRef
	if ref == nil || r.workload == nil {
		return nil
	}
	if n, _ := strconv.ParseInt(r.newRS.GetAnnotations()[revisionAnnotation], 10, 64); n != 1 {
		return nil
	}
	target, scale := workloadReplicas(ref.ScaleDown, r.ro.Status.Phase == PhaseHealthy, r.ro.replicas(), r.st.ReadyReplicas, r.st.Abort)
	if !scale {
		return nil
	}
	if current, found, _ := unstructured.NestedInt64(r.workload.Object, "spec", "replicas"); found && int32(current) == target {
		return nil
	}
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, target)
	if _, err := r.c.client.Resource(deployGVR).Namespace(r.workload.GetNamespace()).Patch(ctx, r.workload.GetName(), types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("spec.workloadRef: scale Deployment %s to %d: %w", r.workload.GetName(), target, err)
	}
	return nil
}

// loadReplicaSets finds the rollout's ReplicaSets and creates the one of
// its current template if missing (at zero replicas; the strategy sizes
// it).
func (r *rolloutCtx) loadReplicaSets(ctx context.Context) error {
	template, err := r.podTemplate(ctx)
	if err != nil {
		return err
	}
	r.template, r.hash = template, podHash(template)
	selector, err := metav1.LabelSelectorAsSelector(r.ro.Spec.Selector)
	if err != nil {
		return fmt.Errorf("spec.selector: %w", err)
	}
	labels, _, _ := unstructured.NestedStringMap(template, "metadata", "labels")
	if !selector.Matches(k8slabels.Set(labels)) {
		return fmt.Errorf("spec.selector does not match the pod template's labels")
	}
	list, err := r.c.client.Resource(rsGVR).Namespace(r.obj.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return err
	}
	revision := int64(0)
	for i := range list.Items {
		rs := &list.Items[i]
		if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != r.obj.GetUID() {
			continue
		}
		if n, _ := strconv.ParseInt(rs.GetAnnotations()[revisionAnnotation], 10, 64); n > revision {
			revision = n
		}
		switch rs.GetLabels()[HashLabel] {
		case r.hash:
			r.newRS = rs
		case r.st.StableRS:
			r.stableRS = rs
		default:
			r.others = append(r.others, rs)
		}
	}
	if r.newRS == nil {
		r.newRS, err = r.createReplicaSet(ctx, revision+1)
		if err != nil {
			return err
		}
	}
	// minReadySeconds follows the Rollout's, as in Argo Rollouts: the
	// ReplicaSet counts a pod available only that long after it is ready.
	if n, _, _ := unstructured.NestedInt64(r.newRS.Object, "spec", "minReadySeconds"); int32(n) != r.ro.Spec.MinReadySeconds {
		patch := fmt.Sprintf(`{"spec":{"minReadySeconds":%d}}`, r.ro.Spec.MinReadySeconds)
		updated, err := r.c.client.Resource(rsGVR).Namespace(r.newRS.GetNamespace()).Patch(ctx, r.newRS.GetName(), types.MergePatchType, []byte(patch),
			metav1.PatchOptions{FieldManager: fieldManager})
		if err != nil {
			return fmt.Errorf("ReplicaSet %s: minReadySeconds: %w", r.newRS.GetName(), err)
		}
		r.newRS = updated
	}
	if r.st.StableRS == r.hash {
		r.stableRS = r.newRS
	}
	return nil
}

func (r *rolloutCtx) createReplicaSet(ctx context.Context, revision int64) (*unstructured.Unstructured, error) {
	template := runtime.DeepCopyJSON(r.template)
	labels, _, _ := unstructured.NestedStringMap(template, "metadata", "labels")
	if labels == nil {
		labels = map[string]string{}
	}
	labels[HashLabel] = r.hash
	if err := unstructured.SetNestedStringMap(template, labels, "metadata", "labels"); err != nil {
		return nil, err
	}
	selector, err := toMap(metav1.CloneSelectorAndAddLabel(r.ro.Spec.Selector, HashLabel, r.hash))
	if err != nil {
		return nil, err
	}
	rs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"spec": map[string]any{"replicas": int64(0), "selector": selector, "template": template, "minReadySeconds": int64(r.ro.Spec.MinReadySeconds)},
	}}
	rs.SetName(r.obj.GetName() + "-" + r.hash)
	rs.SetNamespace(r.obj.GetNamespace())
	rs.SetLabels(labels)
	rs.SetAnnotations(map[string]string{revisionAnnotation: strconv.FormatInt(revision, 10)})
	rs.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(r.obj, r.obj.GroupVersionKind())})
	created, err := r.c.client.Resource(rsGVR).Namespace(r.obj.GetNamespace()).Create(ctx, rs, metav1.CreateOptions{FieldManager: fieldManager})
	if apierrors.IsAlreadyExists(err) {
		return r.c.client.Resource(rsGVR).Namespace(r.obj.GetNamespace()).Get(ctx, rs.GetName(), metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("create ReplicaSet %s: %w", rs.GetName(), err)
	}
	return created, nil
}

func specReplicas(rs *unstructured.Unstructured) int32 {
	if rs == nil {
		return 0
	}
	n, _, _ := unstructured.NestedInt64(rs.Object, "spec", "replicas")
	return int32(n)
}

// available is the ReplicaSet's available replicas, counted only once its
// status reflects its spec.
func available(rs *unstructured.Unstructured) int32 {
	if rs == nil {
		return 0
	}
	n, _, _ := unstructured.NestedInt64(rs.Object, "status", "availableReplicas")
	return int32(n)
}

func statusInt(rs *unstructured.Unstructured, field string) int32 {
	if rs == nil {
		return 0
	}
	n, _, _ := unstructured.NestedInt64(rs.Object, "status", field)
	return int32(n)
}

// settled reports whether rs runs exactly want replicas, all available.
func settled(rs *unstructured.Unstructured, want int32) bool {
	if rs == nil {
		return want == 0
	}
	observed, _, _ := unstructured.NestedInt64(rs.Object, "status", "observedGeneration")
	return specReplicas(rs) == want && observed >= rs.GetGeneration() && statusInt(rs, "replicas") == want && available(rs) >= want
}

// scale sets rs's replicas (no write when they are already n).
func (r *rolloutCtx) scale(ctx context.Context, rs *unstructured.Unstructured, n int32) error {
	if rs == nil || specReplicas(rs) == n {
		return nil
	}
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
	updated, err := r.c.client.Resource(rsGVR).Namespace(rs.GetNamespace()).Patch(ctx, rs.GetName(), types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: fieldManager})
	if err != nil {
		return fmt.Errorf("scale ReplicaSet %s to %d: %w", rs.GetName(), n, err)
	}
	*rs = *updated
	return nil
}

// scaleDownOthers scales every ReplicaSet but the new and the stable one
// to zero; with delay, only once the delay since it was asked has passed
// (the deadline is kept on the ReplicaSet, so it survives restarts).
func (r *rolloutCtx) scaleDownOthers(ctx context.Context, delay time.Duration) error {
	for _, rs := range r.others {
		if err := r.scaleDownAfter(ctx, rs, delay); err != nil {
			return err
		}
	}
	return nil
}

func (r *rolloutCtx) scaleDownAfter(ctx context.Context, rs *unstructured.Unstructured, delay time.Duration) error {
	if rs == nil || specReplicas(rs) == 0 {
		return nil
	}
	if delay > 0 {
		deadline, err := time.Parse(time.RFC3339, rs.GetAnnotations()[scaleDownAnnotation])
		if err != nil {
			deadline = r.now.Add(delay)
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, scaleDownAnnotation, deadline.UTC().Format(time.RFC3339))
			if _, err := r.c.client.Resource(rsGVR).Namespace(rs.GetNamespace()).Patch(ctx, rs.GetName(), types.MergePatchType, []byte(patch),
				metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
				return fmt.Errorf("ReplicaSet %s: %w", rs.GetName(), err)
			}
		}
		if r.now.Before(deadline) {
			r.wakeAt(deadline)
			return nil
		}
	}
	return r.scale(ctx, rs, 0)
}

// keepScaled removes a pending scale-down deadline from rs (it is in use
// again, e.g. the stable set after an abort).
func (r *rolloutCtx) keepScaled(ctx context.Context, rs *unstructured.Unstructured) error {
	if rs == nil {
		return nil
	}
	if _, ok := rs.GetAnnotations()[scaleDownAnnotation]; !ok {
		return nil
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, scaleDownAnnotation)
	_, err := r.c.client.Resource(rsGVR).Namespace(rs.GetNamespace()).Patch(ctx, rs.GetName(), types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: fieldManager})
	return err
}

// counts fills the status' replica counts and the selector the scale
// subresource (an HPA) reads: HPAReplicas, as in Argo Rollouts' own CRD,
// are the pods of every revision.
func (r *rolloutCtx) counts() {
	all := append([]*unstructured.Unstructured{r.newRS}, r.others...)
	if r.stableRS != nil && r.stableRS != r.newRS {
		all = append(all, r.stableRS)
	}
	r.st.Replicas, r.st.ReadyReplicas, r.st.AvailableReplicas = 0, 0, 0
	for _, rs := range all {
		r.st.Replicas += statusInt(rs, "replicas")
		r.st.ReadyReplicas += statusInt(rs, "readyReplicas")
		r.st.AvailableReplicas += available(rs)
	}
	r.st.HPAReplicas = r.st.Replicas
	r.st.UpdatedReplicas = statusInt(r.newRS, "replicas")
	if sel, err := metav1.LabelSelectorAsSelector(r.ro.Spec.Selector); err == nil {
		r.st.Selector = sel.String()
	}
}

// cleanup deletes the oldest scaled-down ReplicaSets beyond
// revisionHistoryLimit (default 10) and the analysis runs beyond their
// history limit.
func (r *rolloutCtx) cleanup(ctx context.Context) error {
	if err := r.cleanupRuns(ctx); err != nil {
		return err
	}
	limit := 10
	if l := r.ro.Spec.RevisionHistoryLimit; l != nil {
		limit = int(*l)
	}
	var idle []*unstructured.Unstructured
	for _, rs := range r.others {
		if specReplicas(rs) == 0 && statusInt(rs, "replicas") == 0 {
			idle = append(idle, rs)
		}
	}
	if len(idle) <= limit {
		return nil
	}
	slices.SortFunc(idle, func(a, b *unstructured.Unstructured) int {
		ra, _ := strconv.Atoi(a.GetAnnotations()[revisionAnnotation])
		rb, _ := strconv.Atoi(b.GetAnnotations()[revisionAnnotation])
		return ra - rb
	})
	for _, rs := range idle[:len(idle)-limit] {
		err := r.c.client.Resource(rsGVR).Namespace(rs.GetNamespace()).Delete(ctx, rs.GetName(), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old ReplicaSet %s: %w", rs.GetName(), err)
		}
	}
	return nil
}
