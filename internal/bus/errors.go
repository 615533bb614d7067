package bus

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors of the bus, compared with errors.Is. Callers never need to know
// JetStream's own.
var (
	// ErrNotFound means what was asked for is not stored: no desired state,
	// history or status for the key, or no artifact with the digest.
	ErrNotFound = errors.New("not found")
	// ErrNotProvisioned means the hub has not created the buckets yet.
	ErrNotProvisioned = errors.New("flotilla buckets not provisioned: is the hub running?")
	// ErrAgentOffline means no agent of the cluster answered a command.
	ErrAgentOffline = errors.New("no agent of the cluster is connected")
)

// notFound turns JetStream's not-found errors into ErrNotFound and leaves
// every other error as it is.
func notFound(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrObjectNotFound), errors.Is(err, jetstream.ErrMsgNotFound):
		return ErrNotFound
	}
	return err
}
