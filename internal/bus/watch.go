package bus

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
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

// catchUpBackOff is how soon a failed catch-up is tried again: after
// about a second at first (JetStream can still be electing its leaders
// just after a server restart), then exponentially longer up to 30 s,
// each wait randomised by half so that a fleet whose catch-ups failed
// together (a server overloaded by every agent reconnecting) does not
// retry together.
func catchUpBackOff() backoff.BackOff {
	policy := backoff.NewExponentialBackOff()
	policy.InitialInterval, policy.MaxInterval, policy.MaxElapsedTime = time.Second, 30*time.Second, 0
	return policy
}

// WatchDesired delivers the desired state of every application of cluster:
// first, per key, the newest retained entry deliver takes (it reports
// whether it took the entry: it verified and is not older than one the
// caller took; catchUpDesired), then every change as it is published.
// An entry read back by a catch-up carries its stream sequence as its
// Revision; a change notification carries none.
// Changes arrive on a core NATS subscription to the cluster's keys (no
// JetStream consumer per agent). Short-lived consumers catch up
// (catchUpDesired) at the start, after every reconnect
// (the subscription missed what was published meanwhile) and after the
// client dropped notifications because deliver fell behind (a slow
// consumer). Entries can arrive twice and out of order; the caller orders
// them by history id. caughtUp is told how each catch-up ended: nil, or
// why it failed and when it is tried again. WatchDesired leaves the
// connection's handlers alone and returns when ctx ends.
func (c *Conn) WatchDesired(ctx context.Context, cluster string, deliver func(DesiredEntry) bool, caughtUp func(err error, retryIn time.Duration)) error {
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
	covered := 0  // drops the last catch-up covered
	var retry <-chan time.Time
	retries := catchUpBackOff()
	for {
		if dropped, _ := sub.Dropped(); dropped > covered {
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
				next := retries.NextBackOff()
				retry = time.After(next)
				caughtUp(err, next)
			} else {
				stale, covered = false, max(covered, dropped)
				retries.Reset()
				caughtUp(nil, 0)
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

// catchUpDesired delivers, for each key under subject, the newest entry
// deliver takes. It reads the last entry of each key (what a KV watcher
// starts with; the server finds them in its subject index, where a read
// of every retained entry under a wildcard scans the stream) and delivers
// it. Only when deliver refuses it (it does not verify, or it is older
// than what the caller already took: a forgery or an old entry put back
// last) does it read that key's retained history, bounded by the bucket's
// history depth, and deliver its entries in order of the history id they
// claim, highest first, until deliver takes one. So neither a replay nor
// a forgery hides the newest good entry from a caller that knows what it
// took; a caller that knows nothing takes a replay put back last, which
// the hub, watching the bucket, supersedes at its next pass.
func (c *Conn) catchUpDesired(ctx context.Context, subject string, deliver func(DesiredEntry) bool) error {
	type last struct {
		key   string
		entry DesiredEntry
		err   error // it did not decode
	}
	var lasts []last
	err := c.drain(ctx, "KV_"+DesiredBucket, subject, jetstream.DeliverLastPerSubjectPolicy, func(msg jetstream.Msg) {
		key, ok := desiredKey(msg.Subject())
		meta, err := msg.Metadata()
		if !ok || err != nil || len(msg.Data()) == 0 {
			return // a delete or purge marker: the key is gone
		}
		e, err := decodeDesired(key, meta.Sequence.Stream, msg.Data(), msg.Headers())
		lasts = append(lasts, last{key: key, entry: e, err: err})
	})
	if err != nil {
		return err
	}
	for _, l := range lasts {
		if l.err == nil && deliver(l.entry) {
			continue
		}
		if err := c.catchUpHistory(ctx, l.key, l.entry.Revision, deliver); err != nil {
			return err
		}
	}
	return nil
}

// catchUpHistory delivers the entries key retains, but the one at
// revision (its last, refused already), in order of the history id they
// claim, highest first, until deliver takes one.
func (c *Conn) catchUpHistory(ctx context.Context, key string, revision uint64, deliver func(DesiredEntry) bool) error {
	var entries []DesiredEntry
	err := c.drain(ctx, "KV_"+DesiredBucket, kvSubject(DesiredBucket, key), jetstream.DeliverAllPolicy, func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil || meta.Sequence.Stream == revision {
			return
		}
		if len(msg.Data()) == 0 {
			entries = nil // a delete or purge marker: what came before is gone
			return
		}
		if e, err := decodeDesired(key, meta.Sequence.Stream, msg.Data(), msg.Headers()); err == nil {
			entries = append(entries, e)
		}
	})
	if err != nil {
		return err
	}
	// Stable: among equal claims the later message comes first.
	slices.Reverse(entries)
	slices.SortStableFunc(entries, func(a, b DesiredEntry) int { return cmp.Compare(claimedHistoryID(b.State), claimedHistoryID(a.State)) })
	for _, e := range entries {
		if deliver(e) {
			return nil
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
