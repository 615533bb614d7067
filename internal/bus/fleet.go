package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// ErrRevisionMismatch is a write expecting a revision the entry no longer
// has: another writer came first.
var ErrRevisionMismatch = errors.New("the entry changed since it was read")

// PutFleetRollout writes a fleet rollout's signed record under id
// ("<kind>/<name>"), expecting the entry at revision (0: absent). It
// returns the entry's new revision.
func (b *Bus) PutFleetRollout(ctx context.Context, id string, r *flotillav1.SignedFleetRollout, revision uint64) (uint64, error) {
	data, err := proto.Marshal(r)
	if err != nil {
		return 0, err
	}
	var rev uint64
	if revision == 0 {
		rev, err = b.fleet.Create(ctx, id, data)
	} else {
		rev, err = b.fleet.Update(ctx, id, data, revision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || wrongLastSequence(err) {
		return 0, fmt.Errorf("fleet rollout %s: %w", id, ErrRevisionMismatch)
	}
	if err != nil {
		return 0, fmt.Errorf("fleet rollout %s: %w", id, err)
	}
	return rev, nil
}

// WatchFleetRollouts calls fn with every fleet rollout record and its
// revision, then with every change, until ctx ends; initial is closed
// once the current ones were delivered. A record that does not decode is
// passed as nil, so the reader can say so.
func (b *Bus) WatchFleetRollouts(ctx context.Context, fn func(id string, r *flotillav1.SignedFleetRollout, revision uint64)) (<-chan struct{}, error) {
	return watchKV(ctx, b.fleet, func(e jetstream.KeyValueEntry) {
		r := &flotillav1.SignedFleetRollout{}
		if proto.Unmarshal(e.Value(), r) != nil {
			r = nil
		}
		fn(e.Key(), r, e.Revision())
	}, jetstream.IgnoreDeletes())
}
