package apitest

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Fleet is a small fleet as the hub would know it at now:
//
//   - staging-1 (env=staging), last heard of two hours ago, and prod-eu
//     (env=production, region=eu), connected; registered in that order;
//   - api-service in both: in prod-eu at history 7, pinned by a rollback
//     to 5, synced and healthy with one canary Rollout at step 2/4; in
//     staging-1 at history 3, with the agent still reporting 2;
//   - worker-service in prod-eu at history 2, with no status yet;
//   - old-service, removed from prod-eu;
//   - the history of api-service, three events (at fixed times, 2026-03-14
//     from 09:00 UTC, an hour apart, so their listing does not change with
//     now), one object of api-service that differs in prod-eu, and a
//     revert to push.
func Fleet(now time.Time) *Hub {
	at := func(ago time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-ago)) }
	const repo = "https://git.example.com/gitops-config"
	source := func(app, commit, message string) *flotillav1.Source {
		return &flotillav1.Source{RepoUrl: repo, Path: "apps/" + app, TargetRevision: "main", Commit: commit,
			CommitMessage: message, CommitAuthor: "Dana Dev <dana@example.com>"}
	}
	pin := &flotillav1.Pin{By: "otto", At: at(10 * time.Minute), RolledBackTo: 5}
	return &Hub{
		Registrations: []*flotillav1.ClusterRegistration{
			{SchemaVersion: 1, Name: "staging-1", Labels: map[string]string{"env": "staging"}, AgentVersion: "v1.1.0",
				KubernetesVersion: "v1.30.4", HeartbeatAt: at(2 * time.Hour)},
			{SchemaVersion: 1, Name: "prod-eu", Labels: map[string]string{"env": "production", "region": "eu"}, AgentVersion: "v1.2.0",
				KubernetesVersion: "v1.31.1", HeartbeatAt: at(5 * time.Second)},
		},
		Desired: []*flotillav1.DesiredState{
			{SchemaVersion: 1, Cluster: "staging-1", App: "api-service", HistoryId: 3, Source: source("api-service", "1111111122222222", "Bump api-service to 2.1.0"),
				Destination: &flotillav1.Destination{Namespace: "api"}, Initiator: flotillav1.Initiator_INITIATOR_GIT, PublishedAt: at(time.Hour)},
			{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 7, Source: source("api-service", "aaaaaaaabbbbbbbb", "Bump api-service to 2.0.0"),
				Destination: &flotillav1.Destination{Namespace: "api"}, Initiator: flotillav1.Initiator_INITIATOR_ROLLBACK, Pin: pin,
				PublishedAt: at(10 * time.Minute)},
			{SchemaVersion: 1, Cluster: "prod-eu", App: "worker-service", HistoryId: 2, Source: source("worker-service", "ccccccccdddddddd", "Add the worker"),
				Destination: &flotillav1.Destination{Namespace: "workers"}, Initiator: flotillav1.Initiator_INITIATOR_GIT, PublishedAt: at(3 * time.Hour)},
			{SchemaVersion: 1, Cluster: "prod-eu", App: "old-service", HistoryId: 4, Deletion: &flotillav1.Deletion{Cascade: true}},
		},
		Status: []*flotillav1.AppStatus{
			{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 7, Revision: "aaaaaaaabbbbbbbb",
				SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_SYNCED, Phase: flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED,
				Health: flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, Message: "1 configured, 1 unchanged",
				Resources: []*flotillav1.ResourceStatus{
					{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout", Namespace: "api", Name: "api-service",
						SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_SYNCED, Health: flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING,
						Action: "configured", Message: "canary   step 2 of 4\n(25 %)"},
					{Version: "v1", Kind: "Service", Namespace: "api", Name: "api-service",
						SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_SYNCED, Health: flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, Action: "unchanged"},
				},
				Rollouts: []*flotillav1.RolloutStatus{{Namespace: "api", Name: "api-service", Strategy: "canary", Phase: "Paused",
					Message: "waiting for promotion", Step: 2, Steps: 4, CanaryWeight: 25,
					Analysis: &flotillav1.AnalysisStatus{Name: "error-rate", Phase: "Running", Measurements: []*flotillav1.MeasurementStatus{
						{Metric: "error-rate", Phase: "Successful", Value: "[0.01]", Count: 2}}}}},
			},
			{SchemaVersion: 1, Cluster: "staging-1", App: "api-service", HistoryId: 2, Revision: "0000000011111111", ObservedAt: at(2*time.Hour + 30*time.Second),
				SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_SYNCED, Phase: flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED,
				Health: flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, Message: "2 unchanged"},
		},
		EventLog: []*flotillav1.Event{
			{SchemaVersion: 1, Time: eventTime(0), Cluster: "prod-eu", App: "worker-service", Type: flotillav1.EventType_EVENT_TYPE_NORMAL,
				Reason: "Synced", Message: "history 2: 3 created", Source: "agent"},
			{SchemaVersion: 1, Time: eventTime(1), Cluster: "staging-1", App: "api-service", Type: flotillav1.EventType_EVENT_TYPE_WARNING,
				Reason: "SyncFailed", Message: "history 3: Deployment api/api-service:\n  image pull backoff", Source: "agent"},
			{SchemaVersion: 1, Time: eventTime(2), Cluster: "prod-eu", App: "api-service", Type: flotillav1.EventType_EVENT_TYPE_NORMAL,
				Reason: "RolledBack", Actor: "otto", Message: "otto rolled back to history 5", Source: "hub"},
		},
		HistoryEntries: []*flotillav1.HistoryEntry{
			{Cluster: "prod-eu", App: "api-service", HistoryId: 7, Source: source("api-service", "aaaaaaaabbbbbbbb", "Bump api-service to 2.0.0"),
				ArtifactDigest: "sha256:77", PublishedAt: at(10 * time.Minute), Initiator: flotillav1.Initiator_INITIATOR_ROLLBACK, Pin: pin,
				Current: true, Result: "Succeeded", ArtifactAvailable: true},
			{Cluster: "prod-eu", App: "api-service", HistoryId: 6, Source: source("api-service", "eeeeeeeeffffffff", "Bump api-service to 2.1.0\n\nIt has the new cache."),
				ArtifactDigest: "sha256:66", PublishedAt: at(time.Hour), Initiator: flotillav1.Initiator_INITIATOR_GIT,
				Result: "Degraded: Deployment api/api-service: 0 of 3 replicas available", ArtifactAvailable: true},
			{Cluster: "prod-eu", App: "api-service", HistoryId: 5, Source: source("api-service", "aaaaaaaabbbbbbbb", "Bump api-service to 2.0.0"),
				ArtifactDigest: "sha256:55", PublishedAt: at(24 * time.Hour), Initiator: flotillav1.Initiator_INITIATOR_GIT, Result: "Succeeded"},
			{Cluster: "staging-1", App: "api-service", HistoryId: 3, Source: source("api-service", "1111111122222222", "Bump api-service to 2.1.0"),
				ArtifactDigest: "sha256:33", PublishedAt: at(time.Hour), Initiator: flotillav1.Initiator_INITIATOR_GIT, Current: true, ArtifactAvailable: true},
		},
		Diffs: map[string][]*flotillav1.ObjectDiff{
			"prod-eu/api-service": {{Group: "apps", Kind: "Deployment", Namespace: "api", Name: "api-service", Action: "update",
				Diff: "@@ -1 +1 @@\n-replicas: 5\n+replicas: 3\n"}},
		},
		FleetRolloutsByName: map[string]*flotillav1.FleetRollout{"api-service": fleetRollout(at)},
		Reverted: &flotillav1.RevertAppResponse{RepoUrl: repo, Branch: "main", Reverted: "eeeeeeeeffffffff0000", Commit: "9999999988888888",
			Message: "Revert \"Bump api-service to 2.1.0\"",
			// The revert changed staging-1's desired state only: prod-eu is
			// pinned to an earlier one.
			Clusters: []*flotillav1.ClusterResult{{Cluster: "staging-1", HistoryId: 4}}, Unchanged: []string{"prod-eu"}},
	}
}

// eventTime is when the i-th event of the Fleet happened.
func eventTime(i int) *timestamppb.Timestamp {
	return timestamppb.New(time.Date(2026, time.March, 14, 9+i, 0, 0, 0, time.UTC))
}

// fleetRollout is api-service's fleet rollout: staging-1 passed its
// analysis, prod-eu's passed too and waits for approval.
func fleetRollout(at func(time.Duration) *timestamppb.Timestamp) *flotillav1.FleetRollout {
	analysis := &flotillav1.WaveAnalysis{Templates: []*flotillav1.AnalysisTemplateRef{{TemplateName: "error-rate"}}}
	const id = "ApplicationSet/api-service@0a1b2c3d4e5f"
	measured := func(wave int32, history uint64, value string) *flotillav1.WaveAnalysisStatus {
		return &flotillav1.WaveAnalysisStatus{Rollout: id, Wave: wave, HistoryId: history, Analysis: &flotillav1.AnalysisStatus{Name: "flotilla-wave-api-service-0a1b2c3d4e", Phase: "Successful",
			Measurements: []*flotillav1.MeasurementStatus{{Metric: "error-rate", Phase: "Successful", Value: value, Count: 3}}}}
	}
	return &flotillav1.FleetRollout{SchemaVersion: 1, Id: id, Kind: "ApplicationSet", Name: "api-service", Revision: "1111111122222222",
		Phase: flotillav1.FleetPhase_FLEET_PHASE_PAUSED, Message: "wave 1 waits for approval", Current: 1, AutoRollback: true, StartedAt: at(time.Hour),
		Waves: []*flotillav1.FleetWaveStatus{
			{Index: 0, Selector: "env In (staging)", Phase: flotillav1.WavePhase_WAVE_PHASE_SUCCEEDED, MaxUpdate: 1, Gate: &flotillav1.FleetGate{Analysis: analysis},
				Targets: []*flotillav1.FleetTarget{{Cluster: "staging-1", App: "api-service", HistoryId: 3, PreviousHistoryId: 2, State: "Synced, Healthy", Healthy: true,
					ReleasedAt: at(time.Hour), Analysis: measured(0, 3, "[0.002]")}}},
			{Index: 1, Selector: "env In (production)", Phase: flotillav1.WavePhase_WAVE_PHASE_GATED, Message: "waits for approval (flotilla fleet promote)", MaxUpdate: 1,
				Gate: &flotillav1.FleetGate{BakeSeconds: 300, Analysis: analysis, Approval: true},
				Targets: []*flotillav1.FleetTarget{{Cluster: "prod-eu", App: "api-service", HistoryId: 7, PreviousHistoryId: 6, State: "Synced, Healthy", Healthy: true,
					ReleasedAt: at(30 * time.Minute), Analysis: measured(1, 7, "[0.001]")}}},
		}}
}
