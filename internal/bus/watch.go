package bus

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
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
// first, per key, the newest retained entry deliver takes (it reports
// whether the entry verified; catchUpDesired), then every change as it is
// published.
// Changes arrive on a core NATS subscription to the cluster's keys (no
// JetStream consumer per agent). A short-lived ordered consumer catches up
// (catchUpDesired) at the start, after every reconnect
// (the subscription missed what was published meanwhile) and after the
// client dropped notifications because deliver fell behind (a slow
// consumer). Entries can arrive twice and out of order; the caller orders
// them by history id. WatchDesired leaves the connection's handlers alone
// and returns when ctx ends.
func (c *Conn) WatchDesired(ctx context.Context, cluster string, deliver func(DesiredEntry) bool) error {
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
				_ = deliver(entry) // a refused change leaves the last good state
			}
		}
	}
}

// catchUpDesired delivers, for each key under subject, the newest
// retained entry deliver takes: the entries in order of the history id
// their desired states claim, highest first, until deliver reports it took
// one (it verified). Not simply the key's last message: an old entry put
// back (a replay) or a forged one must not hide the newest good entry from
// an agent that starts or reconnects. It reads the retained history of
// every key, bounded by the bucket's history depth.
func (c *Conn) catchUpDesired(ctx context.Context, subject string, deliver func(DesiredEntry) bool) error {
	byKey := map[string][]DesiredEntry{}
	var order []string
	err := c.drain(ctx, "KV_"+DesiredBucket, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}, func(msg jetstream.Msg) {
		key, ok := desiredKey(msg.Subject())
		meta, err := msg.Metadata()
		if !ok || err != nil {
			return
		}
		if _, seen := byKey[key]; !seen {
			order = append(order, key)
		}
		if len(msg.Data()) == 0 {
			byKey[key] = nil // a delete or purge marker: what came before is gone
			return
		}
		if e, err := decodeDesired(key, meta.Sequence.Stream, msg.Data(), msg.Headers()); err == nil {
			byKey[key] = append(byKey[key], e)
		}
	})
	if err != nil {
		return err
	}
	for _, key := range order {
		entries := byKey[key]
		// Stable: among equal claims the later message comes first.
		slices.Reverse(entries)
		slices.SortStableFunc(entries, func(a, b DesiredEntry) int { return cmp.Compare(claimedHistoryID(b.State), claimedHistoryID(a.State)) })
		for _, e := range entries {
			if deliver(e) {
				break
			}
		}
	}
	return nil
}

// claimedHistoryID is the history id env's payload claims, unverified; 0
// when it does not decode.
func claimedHistoryID(env *flotillav1.SignedDesiredState) uint64 {
	ds := &flotillav1.DesiredState{}
	if proto.Unmarshal(env.GetDesiredState(), ds) != nil {
		return 0
	}
	return ds.GetHistoryId()
}
