package rollouts

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

const rolloutUID = types.UID("rollout-uid")

// ownedReplicaSet is the ReplicaSet api-<hash> of the Rollout with owner
// as its controller, with spec replicas and ready (and as many available)
// pods of image.
func ownedReplicaSet(owner types.UID, hash string, replicas, ready int64, image string) unstructured.Unstructured {
	rs := unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"spec": map[string]any{"replicas": replicas, "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "api", "image": image}, map[string]any{"name": "proxy", "image": "envoy:1.30"}}}}},
		"status": map[string]any{"replicas": ready, "readyReplicas": ready, "availableReplicas": ready},
	}}
	rs.SetName("api-" + hash)
	rs.SetLabels(map[string]string{HashLabel: hash})
	controller := true
	rs.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "api", UID: owner, Controller: &controller}})
	return rs
}

func reported(hash, role string, replicas, ready int32, image string) *flotillav1.RolloutReplicaSet {
	return &flotillav1.RolloutReplicaSet{Name: "api-" + hash, Hash: hash, Role: role, Replicas: replicas, ReadyReplicas: ready, AvailableReplicas: ready,
		Images: []string{image, "envoy:1.30"}}
}

// A canary mid-way: the stable set first, then the canary, then an old
// one still scaling down; one scaled down, and one another Rollout owns,
// are left out.
func TestReplicaSetsOfACanary(t *testing.T) {
	ro, err := parse(rolloutYAML(t, base+"  strategy: {canary: {steps: [{setWeight: 20}]}}\nstatus: {stableRS: bbb, currentPodHash: ccc}"))
	if err != nil {
		t.Fatal(err)
	}
	items := []unstructured.Unstructured{
		ownedReplicaSet(rolloutUID, "ccc", 2, 1, "api:3"),
		ownedReplicaSet(rolloutUID, "aaa", 1, 1, "api:1"),
		ownedReplicaSet(rolloutUID, "zzz", 0, 0, "api:0"),
		ownedReplicaSet(rolloutUID, "bbb", 8, 8, "api:2"),
		ownedReplicaSet("another-rollout", "ddd", 3, 3, "other:1"),
	}
	want := []*flotillav1.RolloutReplicaSet{
		reported("bbb", "stable", 8, 8, "api:2"),
		reported("ccc", "canary", 2, 1, "api:3"),
		reported("aaa", "", 1, 1, "api:1"),
	}
	if diff := cmp.Diff(want, replicaSetsOf(items, rolloutUID, replicaSetRoles(ro)), protocmp.Transform()); diff != "" {
		t.Errorf("replica sets (-want +got):\n%s", diff)
	}
}

// Blue-green: active first, then preview; once promoted the one set is
// active. An aborted canary's set keeps its role at zero replicas.
func TestReplicaSetRoles(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       map[string]string
	}{
		{"blue-green with a preview", "  strategy: {blueGreen: {activeService: a, previewService: p}}\nstatus: {stableRS: aaa, currentPodHash: bbb, blueGreen: {activeSelector: aaa, previewSelector: bbb}}",
			map[string]string{"aaa": "active", "bbb": "preview"}},
		{"blue-green promoted", "  strategy: {blueGreen: {activeService: a, previewService: p}}\nstatus: {stableRS: bbb, currentPodHash: bbb, blueGreen: {activeSelector: bbb, previewSelector: bbb}}",
			map[string]string{"bbb": "active"}},
		{"canary promoted", "  strategy: {canary: {}}\nstatus: {stableRS: bbb, currentPodHash: bbb}",
			map[string]string{"bbb": "stable"}},
		{"canary aborted", "  strategy: {canary: {}}\nstatus: {stableRS: aaa, currentPodHash: bbb, abort: true}",
			map[string]string{"aaa": "stable", "bbb": "canary"}},
		{"a new Rollout", "  strategy: {canary: {}}", map[string]string{}},
	} {
		ro, err := parse(rolloutYAML(t, base+tc.spec))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, replicaSetRoles(ro)); diff != "" {
			t.Errorf("%s: roles (-want +got):\n%s", tc.name, diff)
		}
	}
	bg, _ := parse(rolloutYAML(t, base+"  strategy: {blueGreen: {activeService: a}}\nstatus: {blueGreen: {activeSelector: aaa, previewSelector: bbb}}"))
	items := []unstructured.Unstructured{ownedReplicaSet(rolloutUID, "bbb", 3, 0, "web:2"), ownedReplicaSet(rolloutUID, "aaa", 3, 3, "web:1")}
	if got := replicaSetsOf(items, rolloutUID, replicaSetRoles(bg)); len(got) != 2 || got[0].GetRole() != "active" || got[1].GetRole() != "preview" {
		t.Errorf("blue-green replica sets %v, want active then preview", got)
	}
}

// However many revisions are scaling down, the status reports
// maxReplicaSets, the stable and canary ones among them.
func TestReplicaSetsAreBounded(t *testing.T) {
	ro, _ := parse(rolloutYAML(t, base+"  strategy: {canary: {}}\nstatus: {stableRS: s, currentPodHash: c}"))
	items := []unstructured.Unstructured{ownedReplicaSet(rolloutUID, "s", 1, 1, "api:s"), ownedReplicaSet(rolloutUID, "c", 1, 1, "api:c")}
	for i := range 3 * maxReplicaSets {
		items = append(items, ownedReplicaSet(rolloutUID, fmt.Sprintf("old%02d", i), 1, 1, "api:old"))
	}
	got := replicaSetsOf(items, rolloutUID, replicaSetRoles(ro))
	if len(got) != maxReplicaSets || got[0].GetRole() != "stable" || got[1].GetRole() != "canary" || got[2].GetName() != "api-old00" {
		t.Errorf("%d replica sets, starting %v", len(got), got[:min(3, len(got))])
	}
}
