package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Register writes (or refreshes, as a heartbeat) a cluster's registration.
func (c *Conn) Register(ctx context.Context, reg *flotillav1.ClusterRegistration) error {
	data, err := proto.Marshal(reg)
	if err != nil {
		return err
	}
	if _, err := c.js.Publish(ctx, kvSubject(ClustersBucket, reg.GetName()), data); err != nil {
		return fmt.Errorf("register cluster %s: %w", reg.GetName(), err)
	}
	return nil
}

// ClusterChange is a registration that appeared, changed or was deleted.
type ClusterChange struct {
	Name string
	// Registration is nil when the cluster's entry was deleted. An entry
	// that expires (no heartbeat for Options.ClusterTTL) goes without a
	// change: the bucket's max age removes it and leaves no marker.
	Registration *flotillav1.ClusterRegistration
}

// WatchClusters calls fn with every current registration, then with every
// change, until ctx ends; initial is closed once the current ones have been
// delivered. The bucket keeps one entry per cluster, so of a registration
// replaced before the watch read it only the newer is delivered. fn runs on one goroutine. A registration that does not decode
// is ignored until it is rewritten.
func (b *Bus) WatchClusters(ctx context.Context, fn func(ClusterChange)) (<-chan struct{}, error) {
	return watchKV(ctx, b.clusters, func(e jetstream.KeyValueEntry) {
		change := ClusterChange{Name: e.Key()}
		if e.Operation() == jetstream.KeyValuePut {
			reg, err := decodeRegistration(e.Value())
			if err != nil {
				return
			}
			change.Registration = reg
		}
		fn(change)
	})
}

// watchKV calls fn with every entry of kv, then with every change, until
// ctx ends; initial is closed once the current entries were delivered.
func watchKV(ctx context.Context, kv jetstream.KeyValue, fn func(jetstream.KeyValueEntry), opts ...jetstream.WatchOpt) (<-chan struct{}, error) {
	w, err := kv.WatchAll(ctx, opts...)
	if err != nil {
		return nil, err
	}
	initial := make(chan struct{})
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				switch {
				case !ok:
					return
				case e == nil:
					select {
					case <-initial:
					default:
						close(initial)
					}
				default:
					fn(e)
				}
			}
		}
	}()
	return initial, nil
}
