package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// watchBuffer is how many change notifications WatchDesired holds while
// deliver is busy. The client drops what comes beyond it (a burst of
// commits to many applications of one cluster during a sync), and a
// catch-up reads those entries back from the stream.
const watchBuffer = 256

// catchUpRetry is how soon a failed catch-up is tried again: JetStream
// can still be electing its leaders just after a server restart.
const catchUpRetry = time.Second

// WatchDesired delivers the desired state of every application of cluster:
// first the newest entry of each key, then every change as it is published.
// Changes arrive on a core NATS subscription to the cluster's keys (no
// JetStream consumer per agent). A short-lived ordered consumer catches up
// with the newest entry of each key at the start, after every reconnect
// (the subscription missed what was published meanwhile) and after the
// client dropped notifications because deliver fell behind (a slow
// consumer). Entries can arrive twice and out of order; the caller orders
// them by history id. WatchDesired leaves the connection's handlers alone
// and returns when ctx ends.
func (c *Conn) WatchDesired(ctx context.Context, cluster string, deliver func(DesiredEntry)) error {
	subject := kvSubject(DesiredBucket, cluster+".>")
	msgs := make(chan *nats.Msg, watchBuffer)
	sub, err := c.nc.ChanSubscribe(subject, msgs)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	// Listeners, not handlers: the connection's reconnect and error
	// handlers belong to whoever opened it.
	connected := c.nc.StatusChanged(nats.CONNECTED)
	defer c.nc.RemoveStatusListener(connected)
	// The client reports the first drop of a run of drops here; the drop
	// count below sees every one.
	slow := sub.StatusChanged(nats.SubscriptionSlowConsumer)

	stale := true // the subscription may have missed entries
	caughtUp := 0 // drops the last catch-up covered
	var retry <-chan time.Time
	for {
		if dropped, _ := sub.Dropped(); dropped > caughtUp {
			stale = true
		}
		if stale && retry == nil {
			// Drops counted before the catch-up starts are covered by it.
			dropped, _ := sub.Dropped()
			if err := c.catchUpDesired(ctx, subject, deliver); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Retry soon: a catch-up that failed must not leave a gap.
				retry = time.After(catchUpRetry)
			} else {
				stale, caughtUp = false, max(caughtUp, dropped)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-connected:
			stale, retry = true, nil
		case _, ok := <-slow:
			if !ok {
				slow = nil // the subscription closed with the connection
			}
		case <-retry:
			retry = nil
		case msg := <-msgs:
			key, ok := desiredKey(msg.Subject)
			if !ok || len(msg.Data) == 0 {
				continue // a delete or purge marker
			}
			if entry, err := decodeDesired(key, 0, msg.Data, msg.Header); err == nil {
				deliver(entry)
			}
		}
	}
}

// catchUpDesired reads the newest entry of each key under subject.
func (c *Conn) catchUpDesired(ctx context.Context, subject string, deliver func(DesiredEntry)) error {
	return c.scanDesired(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	}, deliver)
}
