package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Register writes (or refreshes, as a heartbeat) a cluster's registration.
func (b *Bus) Register(ctx context.Context, reg *flotillav1.ClusterRegistration) error {
	data, err := proto.Marshal(reg)
	if err != nil {
		return err
	}
	if _, err := b.clusters.Put(ctx, reg.GetName(), data); err != nil {
		return fmt.Errorf("register cluster %s: %w", reg.GetName(), err)
	}
	return nil
}

// ClusterChange is a registration that appeared, changed or expired.
type ClusterChange struct {
	Name string
	// Registration is nil when the cluster's entry was deleted or expired.
	Registration *flotillav1.ClusterRegistration
}

// WatchClusters streams registration changes, starting with every current
// registration; initial is closed once those have been delivered.
func (b *Bus) WatchClusters(ctx context.Context) (<-chan ClusterChange, <-chan struct{}, error) {
	w, err := b.clusters.WatchAll(ctx)
	if err != nil {
		return nil, nil, err
	}
	changes := make(chan ClusterChange)
	initial := make(chan struct{})
	go func() {
		defer w.Stop()
		defer close(changes)
		initialDone := false
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if !initialDone {
						initialDone = true
						close(initial)
					}
					continue
				}
				change := ClusterChange{Name: e.Key()}
				if e.Operation() == jetstream.KeyValuePut {
					reg := &flotillav1.ClusterRegistration{}
					if err := proto.Unmarshal(e.Value(), reg); err != nil {
						continue // a corrupt registration is ignored until it is rewritten
					}
					change.Registration = reg
				}
				select {
				case changes <- change:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return changes, initial, nil
}
