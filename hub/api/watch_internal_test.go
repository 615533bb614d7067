package api

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func TestFleetViewChanges(t *testing.T) {
	app := func(cluster, name, sync string) *flotillav1.FleetApp {
		return &flotillav1.FleetApp{Cluster: cluster, App: name, Sync: sync}
	}
	cluster := func(name string, connected bool) *flotillav1.ClusterInfo {
		return &flotillav1.ClusterInfo{Registration: &flotillav1.ClusterRegistration{Name: name}, Connected: connected}
	}
	rollout := func(kind, name, id string, phase flotillav1.FleetPhase) *flotillav1.FleetRollout {
		return &flotillav1.FleetRollout{Kind: kind, Name: name, Id: kind + "/" + name + "@" + id, Phase: phase}
	}
	const (
		progressing = flotillav1.FleetPhase_FLEET_PHASE_PROGRESSING
		paused      = flotillav1.FleetPhase_FLEET_PHASE_PAUSED
	)
	before := &fleetView{
		apps: map[string]*flotillav1.FleetApp{
			"a/web": app("a", "web", "Synced"), "a/db": app("a", "db", "Synced"), "b/web": app("b", "web", "Synced"),
		},
		clusters: map[string]*flotillav1.ClusterInfo{"a": cluster("a", true), "b": cluster("b", true)},
		rollouts: map[string]*flotillav1.FleetRollout{
			"ApplicationSet/web": rollout("ApplicationSet", "web", "1111", progressing),
			"Application/db":     rollout("Application", "db", "2222", progressing),
			"Application/web":    rollout("Application", "web", "3333", progressing),
		},
	}
	after := &fleetView{
		apps: map[string]*flotillav1.FleetApp{
			"a/web": app("a", "web", "OutOfSync"), "a/db": app("a", "db", "Synced"), "c/web": app("c", "web", "Unknown"),
		},
		clusters: map[string]*flotillav1.ClusterInfo{"a": cluster("a", false), "c": cluster("c", true)},
		// web's rollout waits for an approval, db's was replaced by a newer
		// commit's (under the same key), the Application web's is gone and
		// api's started.
		rollouts: map[string]*flotillav1.FleetRollout{
			"ApplicationSet/web": rollout("ApplicationSet", "web", "1111", paused),
			"Application/db":     rollout("Application", "db", "4444", progressing),
			"Application/api":    rollout("Application", "api", "5555", progressing),
		},
	}
	tests := []struct {
		name     string
		from, to *fleetView
		want     *flotillav1.WatchFleetResponse
	}{
		{"nothing held: a snapshot, sorted", nil, before, &flotillav1.WatchFleetResponse{Snapshot: true,
			Apps:     []*flotillav1.FleetApp{app("a", "db", "Synced"), app("a", "web", "Synced"), app("b", "web", "Synced")},
			Clusters: []*flotillav1.ClusterInfo{cluster("a", true), cluster("b", true)},
			FleetRollouts: []*flotillav1.FleetRollout{rollout("Application", "db", "2222", progressing),
				rollout("Application", "web", "3333", progressing), rollout("ApplicationSet", "web", "1111", progressing)}}},
		{"no change: nothing", before, before, &flotillav1.WatchFleetResponse{}},
		{"changed, added and removed", before, after, &flotillav1.WatchFleetResponse{
			Apps:            []*flotillav1.FleetApp{app("a", "web", "OutOfSync"), app("c", "web", "Unknown")},
			RemovedApps:     []*flotillav1.FleetApp{{Cluster: "b", App: "web"}},
			Clusters:        []*flotillav1.ClusterInfo{cluster("a", false), cluster("c", true)},
			RemovedClusters: []string{"b"},
			FleetRollouts: []*flotillav1.FleetRollout{rollout("Application", "api", "5555", progressing),
				rollout("Application", "db", "4444", progressing), rollout("ApplicationSet", "web", "1111", paused)},
			RemovedFleetRollouts: []string{"Application/web"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.from.changesTo(tc.to), protocmp.Transform()); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}
