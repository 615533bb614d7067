package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// fakeBus answers what a test needs of the bus; any other call panics
// on the nil embedded interface.
type fakeBus struct {
	fleetBus
	verifier *signing.Verifier
	// online are the clusters whose agent answers a command.
	online map[string]bool
	events []*flotillav1.Event
}

// Command replies with what the agent was asked, as the agent verified it.
func (f *fakeBus) Command(_ context.Context, cluster string, env *flotillav1.SignedAgentCommand) (*flotillav1.AgentReply, error) {
	if !f.online[cluster] {
		return nil, fmt.Errorf("cluster %s: %w", cluster, bus.ErrAgentOffline)
	}
	cmd, err := f.verifier.VerifyCommand(env)
	if err != nil {
		return nil, err
	}
	return &flotillav1.AgentReply{SchemaVersion: 1, HistoryId: 9, Objects: []string{fmt.Sprintf("%T %s/%s by %s", cmd.GetCommand(), cmd.GetCluster(), cmd.GetApp(), cmd.GetActor())}}, nil
}

func (f *fakeBus) Events(context.Context, string, string, int) ([]*flotillav1.Event, error) {
	return f.events, nil
}

func newTestHub(t *testing.T, b *fakeBus) *Hub {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b.verifier = signing.NewVerifier(pub)
	return &Hub{bus: b, signer: signing.NewSigner(key)}
}

func TestFanOutSignsOneCommandPerClusterAndKeepsTheirOrder(t *testing.T) {
	h := newTestHub(t, &fakeBus{online: map[string]bool{"prod-eu": true, "staging-1": true}})
	targets := []*flotillav1.DesiredState{
		{Cluster: "prod-eu", App: "api-service", HistoryId: 4},
		{Cluster: "prod-us", App: "api-service", HistoryId: 2}, // its agent is offline
		{Cluster: "staging-1", App: "api-service", HistoryId: 7},
	}
	got := fanOut(t.Context(), h, targets, "alice", func(c *flotillav1.AgentCommand) {
		c.Command = &flotillav1.AgentCommand_Sync{Sync: &flotillav1.SyncCommand{}}
	}, func(ds *flotillav1.DesiredState, r *flotillav1.AgentReply) *flotillav1.ClusterResult {
		return &flotillav1.ClusterResult{Cluster: ds.GetCluster(), HistoryId: r.GetHistoryId(), Error: r.GetError(), Objects: r.GetObjects()}
	})
	want := []*flotillav1.ClusterResult{
		{Cluster: "prod-eu", HistoryId: 9, Objects: []string{"*flotillav1.AgentCommand_Sync prod-eu/api-service by alice"}},
		{Cluster: "prod-us", Error: "cluster prod-us: " + bus.ErrAgentOffline.Error()},
		{Cluster: "staging-1", HistoryId: 9, Objects: []string{"*flotillav1.AgentCommand_Sync staging-1/api-service by alice"}},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("fanOut (-want +got):\n%s", diff)
	}
}

func TestResultsReadTheAgentsSyncEvents(t *testing.T) {
	h := newTestHub(t, &fakeBus{events: []*flotillav1.Event{
		{Reason: flotillav1.ReasonSyncFailed, HistoryId: 1, Message: "dry-run failed"},
		{Reason: flotillav1.ReasonSyncSucceeded, HistoryId: 2},
		{Reason: flotillav1.ReasonHealthChanged, HistoryId: 3}, // no outcome
		{Reason: flotillav1.ReasonSyncFailed, HistoryId: 4, Message: "timed out"},
	}})
	for _, tc := range []struct {
		name   string
		status *flotillav1.AppStatus
		want   map[uint64]string
	}{
		{name: "events only", want: map[uint64]string{1: "Failed: dry-run failed", 2: "Succeeded", 4: "Failed: timed out"}},
		{
			name:   "the status has the last word on its history id",
			status: &flotillav1.AppStatus{HistoryId: 4, Phase: flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED},
			want:   map[uint64]string{1: "Failed: dry-run failed", 2: "Succeeded", 4: "Succeeded"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := h.results(t.Context(), "prod-eu", "api-service", tc.status)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
	}
}
