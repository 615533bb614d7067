package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// eventSubject is where an event about (cluster, app) goes; app "_" is the
// cluster or hub as a whole.
func eventSubject(cluster, app string) string {
	if app == "" {
		return eventsSubjectRoot + "." + cluster + "._"
	}
	return eventsSubjectRoot + "." + cluster + "." + appkey.Token(app)
}

// AppendEvent writes an event to the history and audit stream, with ctx's
// trace context in its headers.
func (c *Conn) AppendEvent(ctx context.Context, ev *flotillav1.Event) error {
	return c.AppendEvents(ctx, []*flotillav1.Event{ev})
}

// AppendEvents writes events, each with ctx's trace context in its headers,
// publishing all before waiting for the acknowledgements, so the events of
// a fan-out cost one round trip.
func (c *Conn) AppendEvents(ctx context.Context, events []*flotillav1.Event) error {
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	for _, ev := range events {
		data, err := proto.Marshal(ev)
		if err != nil {
			return err
		}
		f, err := c.js.PublishMsgAsync(&nats.Msg{Subject: eventSubject(clusterOrHub(ev.GetCluster()), ev.GetApp()), Data: data, Header: injectTrace(ctx)})
		if err != nil {
			return fmt.Errorf("append event %s: %w", ev.GetReason(), err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("append event %s: %w", events[i].GetReason(), err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Events reads the newest limit events about cluster and app ("*" for
// any), oldest first. It reads every matching event the stream retains and
// keeps the last limit, so its cost grows with the retained history of the
// filter (bounded by the stream's max age). An event that does not decode
// is skipped.
func (b *Bus) Events(ctx context.Context, cluster, app string, limit int) ([]*flotillav1.Event, error) {
	var out []*flotillav1.Event
	if app != "*" {
		app = appkey.Token(app)
	}
	err := b.drain(ctx, EventsStream, eventsSubjectRoot+"."+cluster+"."+app, jetstream.DeliverAllPolicy, func(msg jetstream.Msg) {
		ev, err := decodeEvent(msg.Data())
		if err != nil {
			return
		}
		if out = append(out, ev); len(out) > limit {
			out = out[1:]
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FollowEvents calls fn with every event appended from now on, in stream
// order, until ctx ends; it returns once it follows. It reads through an
// ordered consumer, which the client recreates where it stopped after a
// reconnect. An event that does not decode, or names another cluster than
// the subject it was written to (an agent writes only its own), is
// skipped.
func (b *Bus) FollowEvents(ctx context.Context, fn func(*flotillav1.Event)) error {
	cons, err := b.js.OrderedConsumer(ctx, EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{eventsSubjectRoot + ".>"}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	consuming, err := cons.Consume(func(msg jetstream.Msg) {
		ev, err := decodeEvent(msg.Data())
		if err != nil || eventSubject(clusterOrHub(ev.GetCluster()), ev.GetApp()) != msg.Subject() {
			return
		}
		fn(ev)
	})
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	context.AfterFunc(ctx, consuming.Stop)
	return nil
}

// clusterOrHub is the cluster an event's subject names: its own, or the
// hub's for an event about no cluster.
func clusterOrHub(cluster string) string {
	if cluster == "" {
		return HubEventsCluster
	}
	return cluster
}
