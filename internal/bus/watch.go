package bus

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"math/rand/v2"
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
// (catchUpDesired) at the start, after a reconnect (the subscription
// missed what was published meanwhile), and after the client dropped
// notifications because deliver fell behind (a slow consumer). A
// reconnect after which one direct get finds nothing published meanwhile
// (unchangedSince) catches up 2 to 5 minutes later instead of at once, so
// a fleet reconnecting to a restarted server creates its consumers after
// the storm, spread over three minutes. Entries can arrive twice and out of order; the caller orders
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
	// handlers belong to whoever opened it. One channel keeps the order
	// of losing and regaining the connection.
	statuses := c.nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED)
	defer c.nc.RemoveStatusListener(statuses)
	// The client reports the first drop of a run of drops here; the drop
	// count below sees every one.
	slow := sub.StatusChanged(nats.SubscriptionSlowConsumer)

	stale := true // the subscription may have missed entries
	covered := 0  // drops the last catch-up covered
	// seen is the newest message of each key this watch knows of (a
	// catch-up's or a notification's); away is seen as it was when the
	// connection dropped, nil when the watch was not caught up then.
	seen, away := map[string]messageSum{}, map[string]messageSum(nil)
	// retry is when a failed catch-up is tried again; recheck when the
	// catch-up deferred after a reconnect runs (nil: none).
	var retry, recheck <-chan time.Time
	retries := catchUpBackOff()
	// A status goes before anything else: a message that came after a
	// reconnect must not be taken for one seen before the drop.
	onStatus := func(status nats.Status) {
		switch {
		case status != nats.CONNECTED:
			if away == nil && !stale {
				away = maps.Clone(seen)
			}
		case away != nil && c.unchangedSince(ctx, subject, away):
			// Nothing was published meanwhile, as far as the server
			// that answered knows: a replica catching up, or a
			// message routed before the subscription came back but
			// stored after the answer, could still hide one. The
			// catch-up that makes sure comes later, at a time drawn
			// at random, not with the whole fleet's reconnect.
			away = nil
			if recheck == nil {
				recheck = recheckAfter()
			}
		default:
			away, stale, retry = nil, true, nil
		}
	}
	// drainStatuses handles the statuses waiting, if any.
	drainStatuses := func() (handled bool) {
		for {
			select {
			case status := <-statuses:
				onStatus(status)
				handled = true
			default:
				return handled
			}
		}
	}
	for {
		if dropped, _ := sub.Dropped(); dropped > covered {
			stale = true
		}
		if stale && retry == nil {
			// Drops counted before the catch-up starts are covered by it.
			dropped, _ := sub.Dropped()
			newest, err := c.catchUpDesired(ctx, subject, deliver)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Retry soon: a catch-up that failed must not leave a gap.
				next := retries.NextBackOff()
				retry = time.After(next)
				caughtUp(err, next)
			} else {
				stale, covered, seen, recheck = false, max(covered, dropped), newest, nil
				retries.Reset()
				caughtUp(nil, 0)
			}
		}
		if drainStatuses() {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case status := <-statuses:
			onStatus(status)
		case _, ok := <-slow:
			if !ok {
				slow = nil // the subscription closed with the connection
			}
		case <-retry:
			retry = nil
		case <-recheck:
			recheck, stale = nil, true
		case msg := <-msgs:
			drainStatuses()
			key, ok := desiredKey(msg.Subject)
			if !ok {
				continue
			}
			seen[key] = sumOf(msg.Header, msg.Data)
			if len(msg.Data) == 0 {
				continue // a delete or purge marker
			}
			if entry, err := decodeDesired(key, 0, msg.Data, msg.Header); err == nil {
				_ = deliver(entry) // a refused change leaves the last good state
			}
		}
	}
}

// messageSum identifies a message of the desired-state bucket by its
// operation and content.
type messageSum [sha256.Size]byte

func sumOf(header nats.Header, data []byte) messageSum {
	h := sha256.New()
	h.Write([]byte(header.Get(kvOperationHeader)))
	h.Write([]byte{0})
	h.Write(data)
	return messageSum(h.Sum(nil))
}

// kvOperationHeader marks a KV delete or purge.
const kvOperationHeader = "KV-Operation"

// unchangedSince reports whether the newest message under subject is the
// newest of its key in seen, what the watch knew when its connection
// dropped: then nothing was published under subject while it was away (a
// later message would be the newest), and a reconnect needs no catch-up.
// It asks with one direct get of the newest message under the wildcard
// subject, which the server answers from its subject index, not through
// its JetStream API queue that a fleet's consumer creates fill. Anything
// else (no answer in time, a server that refuses the request: credentials
// issued before agents were allowed it, which then costs the timeout) is
// no: a catch-up follows.
func (c *Conn) unchangedSince(ctx context.Context, subject string, seen map[string]messageSum) bool {
	ctx, cancel := context.WithTimeout(ctx, unchangedTimeout)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.KV_"+DesiredBucket+"."+subject, nil)
	if err != nil {
		return false
	}
	switch msg.Header.Get("Status") {
	case "":
	case "404":
		return len(seen) == 0 // nothing under subject, then and now
	default:
		return false
	}
	key, ok := desiredKey(msg.Header.Get(jetstream.SubjectHeader))
	if !ok {
		return false
	}
	sum, ok := seen[key]
	return ok && sum == sumOf(msg.Header, msg.Data)
}

// recheckAfter is when the catch-up that follows a reconnect after which
// nothing seemed to have changed (unchangedSince) runs: 2 to 5 minutes
// later, drawn at random, after the reconnect storm (a restarted hub
// starting under 10,000 reconnecting agents served after 1 to 2
// minutes, and catch-ups 30 to 90 s after the reconnect delayed it), and
// spread over three minutes. A variable for the tests.
var recheckAfter = func() <-chan time.Time { return time.After(2*time.Minute + rand.N(3*time.Minute)) }

// unchangedTimeout bounds unchangedSince's direct get. A server busy with
// a reconnecting fleet answered in over 2 s (its read loops took 2.5 s),
// and a catch-up instead of the answer costs it more: a consumer's
// create, fetch and delete.
const unchangedTimeout = 10 * time.Second

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
func (c *Conn) catchUpDesired(ctx context.Context, subject string, deliver func(DesiredEntry) bool) (newest map[string]messageSum, err error) {
	type last struct {
		key   string
		entry DesiredEntry
		err   error // it did not decode
	}
	var lasts []last
	newest = map[string]messageSum{}
	read, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	err = c.drain(read, "KV_"+DesiredBucket, subject, jetstream.DeliverLastPerSubjectPolicy, func(msg jetstream.Msg) {
		key, ok := desiredKey(msg.Subject())
		if !ok {
			return
		}
		newest[key] = sumOf(msg.Headers(), msg.Data())
		meta, err := msg.Metadata()
		if err != nil || len(msg.Data()) == 0 {
			return // a delete or purge marker: the key is gone
		}
		e, err := decodeDesired(key, meta.Sequence.Stream, msg.Data(), msg.Headers())
		lasts = append(lasts, last{key: key, entry: e, err: err})
	})
	if err != nil {
		return nil, err
	}
	for _, l := range lasts {
		if l.err == nil && deliver(l.entry) {
			continue
		}
		if err := c.catchUpHistory(ctx, l.key, l.entry.Revision, deliver); err != nil {
			return nil, err
		}
	}
	return newest, nil
}

// catchUpTimeout bounds each of a catch-up's reads. A fleet starting at once
// queues a consumer create per agent on the server's JetStream API queue;
// a request the client gives up on stays queued and is done anyway, and
// its retry queues it again, so each waits as long as the queue can take.
const catchUpTimeout = 30 * time.Second

// catchUpHistory delivers the entries key retains, but the one at
// revision (its last, refused already), in order of the history id they
// claim, highest first, until deliver takes one.
func (c *Conn) catchUpHistory(ctx context.Context, key string, revision uint64, deliver func(DesiredEntry) bool) error {
	var entries []DesiredEntry
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
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
