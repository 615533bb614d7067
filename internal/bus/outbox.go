package bus

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Outbox sends an agent's statuses and events over its connection and
// keeps what it could not send while NATS is away: the newest status of
// each application (an older one is of no use once a newer exists) and
// the newest MaxEvents events, oldest dropped first and counted. Flush
// sends what it keeps, statuses first (the fleet view is the clusters'
// real state before it is their history), then events in order; Run
// flushes until its context ends. While anything is kept, what is sent
// goes behind it, so nothing overtakes what came before it.
type Outbox struct {
	conn      *Conn
	cluster   string
	maxEvents int

	// flushing is held by the one Flush at a time, so nothing kept is
	// sent twice or skipped.
	flushing sync.Mutex

	mu       sync.Mutex
	statuses map[string]*flotillav1.AppStatus // by appkey.Join(cluster, app)
	order    []string                         // keys of statuses, oldest first
	events   []*flotillav1.Event
	dropped  int
}

// DefaultOutboxEvents is how many events an agent keeps while NATS is
// away: about a day of a busy cluster's syncs, a few MiB at most.
const DefaultOutboxEvents = 10000

// NewOutbox returns an Outbox for cluster's agent over c, keeping at most
// maxEvents events.
func NewOutbox(c *Conn, cluster string, maxEvents int) *Outbox {
	return &Outbox{conn: c, cluster: cluster, maxEvents: maxEvents, statuses: map[string]*flotillav1.AppStatus{}}
}

// PutStatus sends st, or keeps it (replacing a kept older one of its
// application) when it cannot be sent now; the error says why it was
// kept.
func (o *Outbox) PutStatus(ctx context.Context, st *flotillav1.AppStatus) error {
	key := appkey.Join(st.GetCluster(), st.GetApp())
	o.mu.Lock()
	if !o.empty() {
		o.keepStatus(key, st)
		o.mu.Unlock()
		return o.Flush(ctx)
	}
	o.mu.Unlock()
	if err := o.conn.PutStatus(ctx, st); err != nil {
		o.mu.Lock()
		o.keepStatus(key, st)
		o.mu.Unlock()
		return fmt.Errorf("status of %s kept to send later: %w", st.GetApp(), err)
	}
	return nil
}

// AppendEvent sends ev, or keeps it when it cannot be sent now.
func (o *Outbox) AppendEvent(ctx context.Context, ev *flotillav1.Event) error {
	o.mu.Lock()
	if !o.empty() {
		o.keepEvent(ev)
		o.mu.Unlock()
		return o.Flush(ctx)
	}
	o.mu.Unlock()
	if err := o.conn.AppendEvent(ctx, ev); err != nil {
		o.mu.Lock()
		o.keepEvent(ev)
		o.mu.Unlock()
		return fmt.Errorf("event kept to send later: %w", err)
	}
	return nil
}

// GetStatus is the newest status of (cluster, app): the kept one, else
// the one stored.
func (o *Outbox) GetStatus(ctx context.Context, cluster, app string) (*flotillav1.AppStatus, error) {
	o.mu.Lock()
	st, ok := o.statuses[appkey.Join(cluster, app)]
	o.mu.Unlock()
	if ok {
		return proto.CloneOf(st), nil
	}
	return o.conn.GetStatus(ctx, cluster, app)
}

// Pending counts what is kept: statuses and events.
func (o *Outbox) Pending() (statuses, events int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.statuses), len(o.events)
}

// Flush sends what is kept, statuses first, and stops at the first send
// that fails (its error), keeping the rest. Events dropped for room are
// told by one more event.
func (o *Outbox) Flush(ctx context.Context) error {
	o.flushing.Lock()
	defer o.flushing.Unlock()
	for {
		o.mu.Lock()
		if len(o.order) == 0 {
			o.mu.Unlock()
			break
		}
		key := o.order[0]
		st := o.statuses[key]
		o.mu.Unlock()
		if err := o.conn.PutStatus(ctx, st); err != nil {
			return err
		}
		o.mu.Lock()
		if o.statuses[key] == st { // not replaced meanwhile
			delete(o.statuses, key)
			o.order = slices.DeleteFunc(o.order, func(k string) bool { return k == key })
		}
		o.mu.Unlock()
	}
	o.mu.Lock()
	if o.dropped > 0 {
		o.events = append([]*flotillav1.Event{{SchemaVersion: 1, Time: timestamppb.Now(), Cluster: o.cluster, Type: flotillav1.EventType_EVENT_TYPE_WARNING,
			Reason: flotillav1.ReasonEventsDropped, Source: "agent", Actor: "agent/" + o.cluster,
			Message: fmt.Sprintf("%d events were dropped while NATS was unreachable (the newest %d were kept)", o.dropped, o.maxEvents)}}, o.events...)
		o.dropped = 0
	}
	o.mu.Unlock()
	const batch = 100
	for {
		o.mu.Lock()
		n := min(len(o.events), batch)
		next := slices.Clone(o.events[:n])
		o.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := o.conn.AppendEvents(ctx, next); err != nil {
			return err
		}
		o.mu.Lock()
		o.events = o.events[n:]
		o.mu.Unlock()
	}
}

// Run flushes what is kept every interval until ctx ends. flushed is
// told when flushes start failing (the first error of a run of them) and
// when one succeeds again (nil), not at every attempt.
func (o *Outbox) Run(ctx context.Context, interval time.Duration, flushed func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o.mu.Lock()
		empty := o.empty()
		o.mu.Unlock()
		if empty && failing { // a send of PutStatus or AppendEvent flushed it
			failing = false
			flushed(nil)
		}
		if !empty {
			flushCtx, cancel := context.WithTimeout(ctx, interval*5)
			err := o.Flush(flushCtx) // what failed stays kept for the next round
			cancel()
			if (err != nil) != failing && ctx.Err() == nil {
				failing = err != nil
				flushed(err)
			}
		}
	}
}

// empty reports whether nothing is kept; o.mu is held.
func (o *Outbox) empty() bool { return len(o.order) == 0 && len(o.events) == 0 && o.dropped == 0 }

// keepStatus keeps st as its application's newest; o.mu is held.
func (o *Outbox) keepStatus(key string, st *flotillav1.AppStatus) {
	if _, ok := o.statuses[key]; !ok {
		o.order = append(o.order, key)
	}
	o.statuses[key] = proto.CloneOf(st)
}

// keepEvent keeps ev, dropping the oldest beyond maxEvents; o.mu is held.
func (o *Outbox) keepEvent(ev *flotillav1.Event) {
	o.events = append(o.events, ev)
	if over := len(o.events) - o.maxEvents; over > 0 {
		o.events = slices.Delete(o.events, 0, over)
		o.dropped += over
	}
}
