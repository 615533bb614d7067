package rollouts

import (
	"cmp"
	"context"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// The roles a Rollout's ReplicaSets play, as the status reports them.
const (
	roleStable  = "stable"
	roleCanary  = "canary"
	roleActive  = "active"
	rolePreview = "preview"
)

// replicaSets reads the Rollout's ReplicaSets for its status (see
// replicaSetsOf); nil when they cannot be listed.
func (s Summarizer) replicaSets(ctx context.Context, obj *unstructured.Unstructured, ro *Rollout) []*flotillav1.RolloutReplicaSet {
	// The Rollout's selector narrows the list to its own where it has one
	// (with a workloadRef it may leave it to the Deployment); ownership
	// decides.
	selector := HashLabel
	if ro.Spec.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(ro.Spec.Selector)
		if err != nil {
			return nil
		}
		if !sel.Empty() {
			selector = sel.String() + "," + HashLabel
		}
	}
	list, err := s.Client.Resource(rsGVR).Namespace(obj.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil
	}
	return replicaSetsOf(list.Items, obj.GetUID(), replicaSetRoles(ro))
}

// replicaSetRoles maps the pod-template hashes of the Rollout's current
// ReplicaSets to their roles: stable and canary (the current revision,
// while it is not stable yet) for a canary; active and preview (while it
// is not active) for blue-green.
func replicaSetRoles(ro *Rollout) map[string]string {
	st := &ro.Status
	roles := map[string]string{}
	switch {
	case ro.Spec.Strategy.Canary != nil:
		roles[st.CurrentPodHash] = roleCanary
		roles[st.StableRS] = roleStable // the same hash once promoted: stable wins
	case ro.Spec.Strategy.BlueGreen != nil:
		roles[st.BlueGreen.PreviewSelector] = rolePreview
		roles[st.BlueGreen.ActiveSelector] = roleActive
	}
	delete(roles, "")
	return roles
}

// replicaSetsOf is the ReplicaSets of items that owner controls and that
// have a role or replicas (an old one still scaling down), stable or
// active first, then canary or preview, then the others, by name; at most
// maxReplicaSets. Replicas is what a ReplicaSet is scaled to (its spec),
// as in Argo Rollouts' kubectl plugin; ready and available are what it
// has.
func replicaSetsOf(items []unstructured.Unstructured, owner types.UID, roles map[string]string) []*flotillav1.RolloutReplicaSet {
	var out []*flotillav1.RolloutReplicaSet
	for i := range items {
		rs := &items[i]
		if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != owner {
			continue
		}
		hash := rs.GetLabels()[HashLabel]
		role := roles[hash]
		if role == "" && specReplicas(rs) == 0 && statusInt(rs, "replicas") == 0 {
			continue
		}
		out = append(out, &flotillav1.RolloutReplicaSet{Name: rs.GetName(), Hash: hash, Role: role,
			Replicas: specReplicas(rs), ReadyReplicas: statusInt(rs, "readyReplicas"), AvailableReplicas: available(rs), Images: imagesOf(rs)})
	}
	slices.SortFunc(out, func(a, b *flotillav1.RolloutReplicaSet) int {
		return cmp.Or(cmp.Compare(roleRank(a.GetRole()), roleRank(b.GetRole())), strings.Compare(a.GetName(), b.GetName()))
	})
	if len(out) > maxReplicaSets {
		out = out[:maxReplicaSets]
	}
	return out
}

// roleRank orders ReplicaSets by role: the one serving (stable, active),
// the one coming (canary, preview), then old ones.
func roleRank(role string) int {
	switch role {
	case roleStable, roleActive:
		return 0
	case roleCanary, rolePreview:
		return 1
	}
	return 2
}

// imagesOf is the images of the ReplicaSet's containers, at most
// maxImages.
func imagesOf(rs *unstructured.Unstructured) []string {
	containers, _, _ := unstructured.NestedSlice(rs.Object, "spec", "template", "spec", "containers")
	var out []string
	for _, c := range containers {
		if len(out) == maxImages {
			break
		}
		container, _ := c.(map[string]any)
		if image, _ := container["image"].(string); image != "" {
			out = append(out, clip(image))
		}
	}
	return out
}
