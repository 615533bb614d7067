package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// WatchDesired delivers the desired state of every application of cluster:
// first the newest entry of each key, then every change as it is published.
// Changes arrive on a core NATS subscription to the cluster's keys (no
// JetStream consumer per agent); after every reconnect a short-lived ordered
// consumer catches up with what was missed. Entries can arrive twice; the
// caller orders them by history id. WatchDesired returns when ctx ends.
func (b *Bus) WatchDesired(ctx context.Context, cluster string, deliver func(DesiredEntry)) error {
	subject := kvSubject(DesiredBucket, cluster+".>")
	msgs := make(chan *nats.Msg, 256)
	sub, err := b.nc.ChanSubscribe(subject, msgs)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	defer sub.Unsubscribe()

	reconnected := make(chan struct{}, 1)
	b.nc.SetReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	})
	catchUp := func() {
		if err := b.catchUpDesired(ctx, subject, deliver); err != nil && ctx.Err() == nil {
			// Retry soon: a catch-up that failed (JetStream still
			// electing after a restart) must not leave a gap.
			time.AfterFunc(time.Second, func() {
				select {
				case reconnected <- struct{}{}:
				default:
				}
			})
		}
	}
	catchUp()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconnected:
			catchUp()
		case msg := <-msgs:
			if len(msg.Data) == 0 {
				continue // a delete or purge marker
			}
			entry, err := decodeDesired(msg.Subject[len("$KV."+DesiredBucket+"."):], 0, msg.Data, msg.Header)
			if err != nil {
				continue
			}
			deliver(entry)
		}
	}
}

// catchUpDesired reads the newest entry of each key under subject.
func (b *Bus) catchUpDesired(ctx context.Context, subject string, deliver func(DesiredEntry)) error {
	return b.scanDesired(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	}, deliver)
}

// PutStatus writes an application's status.
func (b *Bus) PutStatus(ctx context.Context, st *flotillav1.AppStatus) error {
	data, err := proto.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := b.status.Put(ctx, Key(st.GetCluster(), st.GetApp()), data); err != nil {
		return fmt.Errorf("status %s: %w", Key(st.GetCluster(), st.GetApp()), err)
	}
	return nil
}

// GetStatus reads an application's status.
func (b *Bus) GetStatus(ctx context.Context, cluster, app string) (*flotillav1.AppStatus, error) {
	e, err := b.status.Get(ctx, Key(cluster, app))
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", Key(cluster, app), err)
	}
	st := &flotillav1.AppStatus{}
	if err := proto.Unmarshal(e.Value(), st); err != nil {
		return nil, fmt.Errorf("status %s: %w", Key(cluster, app), err)
	}
	return st, nil
}

// Statuses reads every application's status, keyed by Key(cluster, app),
// with one short-lived ordered consumer.
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
			st := &flotillav1.AppStatus{}
			if proto.Unmarshal(e.Value(), st) == nil {
				out[e.Key()] = st
			}
		}
	}
}

// WatchStatuses calls fn with every status as the bucket holds it now,
// then with every change, until ctx ends; initial is closed once the
// current statuses have been delivered. fn runs on one goroutine.
func (b *Bus) WatchStatuses(ctx context.Context, fn func(key string, st *flotillav1.AppStatus)) (<-chan struct{}, error) {
	return watchKV(ctx, b.status, func(e jetstream.KeyValueEntry) {
		st := &flotillav1.AppStatus{}
		if proto.Unmarshal(e.Value(), st) == nil {
			fn(e.Key(), st)
		}
	}, jetstream.IgnoreDeletes())
}
