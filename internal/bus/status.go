package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// PutStatus writes an application's status.
func (c *Conn) PutStatus(ctx context.Context, st *flotillav1.AppStatus) error {
	data, err := proto.Marshal(st)
	if err != nil {
		return err
	}
	key := appkey.Join(st.GetCluster(), st.GetApp())
	if _, err := c.js.Publish(ctx, kvSubject(StatusBucket, key), data); err != nil {
		return fmt.Errorf("status %s: %w", key, err)
	}
	return nil
}

// GetStatus reads an application's status. It returns ErrNotFound
// (wrapped) when the application has none.
func (c *Conn) GetStatus(ctx context.Context, cluster, app string) (*flotillav1.AppStatus, error) {
	key := appkey.Join(cluster, app)
	msg, _, err := c.directGetLast(ctx, "KV_"+StatusBucket, kvSubject(StatusBucket, key))
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", key, err)
	}
	st, err := decodeStatus(msg.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return st, nil
}

// Statuses reads every application's status, keyed by
// appkey.Join(cluster, app), with one short-lived ordered consumer. A
// status that does not decode is left out.
func (b *Bus) Statuses(ctx context.Context) (map[string]*flotillav1.AppStatus, error) {
	w, err := b.status.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	out := map[string]*flotillav1.AppStatus{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return out, nil
			}
			if st, err := decodeStatus(e.Value()); err == nil {
				out[e.Key()] = st
			}
		}
	}
}

// WatchStatuses calls fn with every status as the bucket holds it now,
// then with every change, until ctx ends; initial is closed once the
// current statuses have been delivered. fn runs on one goroutine. A status
// that does not decode is skipped.
func (b *Bus) WatchStatuses(ctx context.Context, fn func(key string, st *flotillav1.AppStatus)) (<-chan struct{}, error) {
	return watchKV(ctx, b.status, func(e jetstream.KeyValueEntry) {
		if st, err := decodeStatus(e.Value()); err == nil {
			fn(e.Key(), st)
		}
	}, jetstream.IgnoreDeletes())
}
