package hub

import (
	"context"

	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// fleetBus is what the hub reads and writes on the bus once it is
// provisioned (*bus.Bus implements it; the publisher has its own
// publish.Store): registrations, statuses, events, the desired-state
// history, artifacts and the agents' commands.
type fleetBus interface {
	WatchClusters(ctx context.Context, fn func(bus.ClusterChange)) (<-chan struct{}, error)
	WatchStatuses(ctx context.Context, fn func(key string, st *flotillav1.AppStatus)) (<-chan struct{}, error)
	Statuses(ctx context.Context) (map[string]*flotillav1.AppStatus, error)

	Events(ctx context.Context, cluster, app string, limit int) ([]*flotillav1.Event, error)
	AppendEvent(ctx context.Context, ev *flotillav1.Event) error
	AppendEvents(ctx context.Context, events []*flotillav1.Event) error

	// DesiredHistory returns bus.ErrNotFound (wrapped) for a key without
	// history.
	DesiredHistory(ctx context.Context, cluster, app string) ([]bus.DesiredEntry, error)
	HasArtifact(ctx context.Context, digest string) (bool, error)
	GetArtifact(ctx context.Context, digest string) ([]byte, error)

	// Command returns bus.ErrAgentOffline (wrapped) when no agent of the
	// cluster is connected.
	Command(ctx context.Context, cluster string, cmd *flotillav1.SignedAgentCommand) (*flotillav1.AgentReply, error)
}
