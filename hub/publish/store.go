package publish

import (
	"context"

	"github.com/flotilla-dev/flotilla/internal/bus"
)

// Store is what the Publisher needs of the bus (*bus.Bus implements it):
// the desired-state bucket with its history, and the artifacts the desired
// states reference.
type Store interface {
	// LatestDesired reads the newest desired state of every key.
	LatestDesired(ctx context.Context) ([]bus.DesiredEntry, error)
	// DesiredHistory reads the retained desired states of a key, oldest
	// first; bus.ErrNotFound when there is none.
	DesiredHistory(ctx context.Context, cluster, app string) ([]bus.DesiredEntry, error)
	// EachRetainedDesired calls fn with every retained desired state.
	EachRetainedDesired(ctx context.Context, fn func(bus.DesiredEntry)) error
	// PublishDesired writes the puts, waiting for all of them, and returns
	// the revision each got (0 for those the server did not take).
	PublishDesired(ctx context.Context, puts []bus.DesiredPut) ([]uint64, error)
	// TrimDesiredHistory keeps the newest keep desired states of a key.
	TrimDesiredHistory(ctx context.Context, cluster, app string, keep int) error

	// PutArtifact stores an artifact unless it is there already and
	// reports whether it wrote.
	PutArtifact(ctx context.Context, digest string, data []byte) (bool, error)
	HasArtifact(ctx context.Context, digest string) (bool, error)
	// ArtifactIntact reads an artifact back and reports whether it is
	// there with the content its digest names.
	ArtifactIntact(ctx context.Context, digest string) (bool, error)
	ListArtifacts(ctx context.Context) ([]string, error)
	DeleteArtifact(ctx context.Context, digest string) error
}
