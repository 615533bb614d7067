package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Identity is a cluster's identity as the hub issued it: its labels, which
// target applications, and the NATS user its credentials are for. Only
// the hub reads and writes identities; the credentials themselves are
// never stored.
type Identity struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// UserKey is the public key of the cluster's NATS user.
	UserKey   string    `json:"userKey"`
	CreatedAt time.Time `json:"createdAt"`
	// RevokedAt is set once the cluster is revoked.
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

// Revoked reports whether the identity was revoked.
func (i Identity) Revoked() bool { return !i.RevokedAt.IsZero() }

// ErrIdentityExists is returned by CreateIdentity for a name with a
// current (not revoked) identity.
var ErrIdentityExists = errors.New("cluster identity exists")

// CreateIdentity stores a new identity. A revoked identity of the same
// name is replaced (a cluster re-added after a revocation gets a new
// user); a current one is not: CreateIdentity returns ErrIdentityExists.
func (b *Bus) CreateIdentity(ctx context.Context, id Identity) error {
	data, err := json.Marshal(id)
	if err != nil {
		return err
	}
	old, err := b.identities.Get(ctx, id.Name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = b.identities.Create(ctx, id.Name, data)
	case err != nil:
	default:
		prev, decodeErr := decodeIdentity(old.Value())
		if decodeErr == nil && !prev.Revoked() {
			return fmt.Errorf("%s: %w", id.Name, ErrIdentityExists)
		}
		_, err = b.identities.Update(ctx, id.Name, data, old.Revision())
	}
	if err != nil {
		return fmt.Errorf("identity %s: %w", id.Name, err)
	}
	return nil
}

// RevokeIdentity marks name's identity revoked at and returns it. It
// returns ErrNotFound (wrapped) for a name without one.
func (b *Bus) RevokeIdentity(ctx context.Context, name string, at time.Time) (Identity, error) {
	return b.updateIdentity(ctx, name, func(id *Identity) {
		if !id.Revoked() {
			id.RevokedAt = at.UTC()
		}
	})
}

// LabelIdentity replaces the labels of name's current identity and
// returns it. It returns ErrNotFound (wrapped) for a name without a
// current one.
func (b *Bus) LabelIdentity(ctx context.Context, name string, labels map[string]string) (Identity, error) {
	id, err := b.updateIdentity(ctx, name, func(id *Identity) { id.Labels = labels })
	if err == nil && id.Revoked() {
		return Identity{}, fmt.Errorf("identity %s is revoked: %w", name, ErrNotFound)
	}
	return id, err
}

// updateIdentity applies change to name's identity with a compare-and-set
// on the revision it read.
func (b *Bus) updateIdentity(ctx context.Context, name string, change func(*Identity)) (Identity, error) {
	e, err := b.identities.Get(ctx, name)
	if err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", name, notFound(err))
	}
	id, err := decodeIdentity(e.Value())
	if err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", name, err)
	}
	if id.Revoked() {
		return id, nil
	}
	change(&id)
	data, err := json.Marshal(id)
	if err != nil {
		return Identity{}, err
	}
	if _, err := b.identities.Update(ctx, name, data, e.Revision()); err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", name, err)
	}
	return id, nil
}

// WatchIdentities calls fn with every identity, then with every change,
// until ctx ends; initial is closed once the current ones were delivered.
// An identity that does not decode is skipped.
func (b *Bus) WatchIdentities(ctx context.Context, fn func(Identity)) (<-chan struct{}, error) {
	return watchKV(ctx, b.identities, func(e jetstream.KeyValueEntry) {
		if id, err := decodeIdentity(e.Value()); err == nil && id.Name == e.Key() {
			fn(id)
		}
	}, jetstream.IgnoreDeletes())
}

func decodeIdentity(data []byte) (Identity, error) {
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return id, fmt.Errorf("identity does not decode: %w", err)
	}
	return id, nil
}
