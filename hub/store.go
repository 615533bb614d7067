package hub

import (
	"context"
	"time"

	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// fleetBus is what the hub reads and writes on the bus once it is
// provisioned (*bus.Bus implements it; the publisher has its own
// publish.Store): identities, registrations, statuses, events, artifacts and the agents' commands.
type fleetBus interface {
	WatchClusters(ctx context.Context, fn func(bus.ClusterChange)) (<-chan struct{}, error)
	WatchIdentities(ctx context.Context, fn func(bus.Identity)) (<-chan struct{}, error)
	// CreateIdentity returns bus.ErrIdentityExists (wrapped) for a
	// current identity of the name.
	CreateIdentity(ctx context.Context, id bus.Identity) error
	// RevokeIdentity returns bus.ErrNotFound (wrapped) for an unknown name.
	RevokeIdentity(ctx context.Context, name string, at time.Time) (bus.Identity, error)
	// LabelIdentity returns bus.ErrNotFound (wrapped) for an unknown or
	// revoked name.
	LabelIdentity(ctx context.Context, name string, labels map[string]string) (bus.Identity, error)
	WatchStatuses(ctx context.Context, fn func(key string, st *flotillav1.AppStatus)) (<-chan struct{}, error)
	// WatchFleetRollouts calls fn with every fleet rollout record, then
	// every change (a record that does not decode as nil).
	WatchFleetRollouts(ctx context.Context, fn func(id string, r *flotillav1.SignedFleetRollout, revision uint64)) (<-chan struct{}, error)
	// FollowDesired calls fn with every desired state written, by this
	// replica or another.
	FollowDesired(ctx context.Context, fn func(bus.DesiredEntry)) error
	Statuses(ctx context.Context) (map[string]*flotillav1.AppStatus, error)
	// PutStatus writes a status; the hub writes its own verdict on each
	// application under bus.HubEventsCluster.
	PutStatus(ctx context.Context, st *flotillav1.AppStatus) error

	Events(ctx context.Context, cluster, app string, limit int) ([]*flotillav1.Event, error)
	FollowEvents(ctx context.Context, fn func(*flotillav1.Event)) error
	AppendEvent(ctx context.Context, ev *flotillav1.Event) error
	AppendEvents(ctx context.Context, events []*flotillav1.Event) error

	HasArtifact(ctx context.Context, digest string) (bool, error)
	GetArtifact(ctx context.Context, digest string) ([]byte, error)

	// Command returns bus.ErrAgentOffline (wrapped) when no agent of the
	// cluster is connected.
	Command(ctx context.Context, cluster string, cmd *flotillav1.SignedAgentCommand) (*flotillav1.AgentReply, error)
}
