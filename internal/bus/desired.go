package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// DesiredPut is one signed desired state to publish.
type DesiredPut struct {
	Cluster, App string
	State        *flotillav1.SignedDesiredState
	// Trace is the span the entry continues, carried in its headers; the
	// zero value means the span of PublishDesired's ctx.
	Trace trace.SpanContext
}

// DesiredEntry is a published desired state read back.
type DesiredEntry struct {
	Cluster, App string
	// Revision is the stream sequence of the entry (0 for an entry
	// WatchDesired got as a change notification).
	Revision uint64
	State    *flotillav1.SignedDesiredState
	// Trace is the span that published the entry, as a remote span
	// context; it is invalid when none travelled with it. Entries read
	// from the bucket's history (LatestDesired, DesiredHistory) have none.
	Trace   trace.SpanContext
	baggage baggage.Baggage
}

// Context returns parent carrying the entry's trace context (its span as
// the remote parent, and its baggage), so work on the entry continues the
// trace that published it.
func (e DesiredEntry) Context(parent context.Context) context.Context {
	ctx := parent
	if e.Trace.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, e.Trace)
	}
	if e.baggage.Len() > 0 {
		ctx = baggage.ContextWithBaggage(ctx, e.baggage)
	}
	return ctx
}

// PublishDesired writes the puts as KV entries, publishing them all before
// waiting for the acknowledgements so a fan-out to many clusters costs one
// round trip, not one per cluster. The KV put is a plain publish on the
// bucket's subject, which lets the trace context travel with the entry as
// message headers (W3C traceparent and baggage). It returns the revision
// each put got, 0 for those the server did not take, with an error naming
// them: a partly acknowledged publish is partly done.
func (b *Bus) PublishDesired(ctx context.Context, puts []DesiredPut) ([]uint64, error) {
	revisions := make([]uint64, len(puts))
	futures := make([]jetstream.PubAckFuture, 0, len(puts))
	for _, p := range puts {
		key := appkey.Join(p.Cluster, p.App)
		data, err := proto.Marshal(p.State)
		if err != nil {
			return revisions, errors.Join(fmt.Errorf("encode desired state %s: %w", key, err), wait(ctx, futures, puts, revisions))
		}
		traceCtx := ctx
		if p.Trace.IsValid() {
			traceCtx = trace.ContextWithSpanContext(ctx, p.Trace)
		}
		msg := &nats.Msg{Subject: kvSubject(DesiredBucket, key), Data: data, Header: injectTrace(traceCtx)}
		f, err := b.js.PublishMsgAsync(msg)
		if err != nil {
			return revisions, errors.Join(fmt.Errorf("publish desired state %s: %w", key, err), wait(ctx, futures, puts, revisions))
		}
		futures = append(futures, f)
	}
	return revisions, wait(ctx, futures, puts, revisions)
}

// maxBatch is the most messages an atomic batch carries: the server's
// default limit.
const maxBatch = 1000

// PublishDesiredFenced writes the puts as PublishDesired does, fenced by
// the hub leader's lease: in atomic batches whose first message expects
// the lease at revision lease, so the server takes a batch whole while
// the lease is at that revision and none of it otherwise (a deposed
// leader's write fails). Batches go one after the other: the server lets
// one write at a time expect a subject's revision.
func (b *Bus) PublishDesiredFenced(ctx context.Context, lease uint64, puts []DesiredPut) ([]uint64, error) {
	revisions := make([]uint64, len(puts))
	for start := 0; start < len(puts); start += maxBatch {
		batch := puts[start:min(start+maxBatch, len(puts))]
		last, err := b.publishBatch(ctx, lease, batch)
		if err != nil {
			var keys []string
			for _, p := range batch {
				keys = append(keys, appkey.Join(p.Cluster, p.App))
			}
			return revisions, fmt.Errorf("publish desired states %s: %w", strings.Join(keys, ", "), err)
		}
		// A batch is stored contiguously, ending at the commit's sequence.
		for i := range batch {
			revisions[start+i] = last - uint64(len(batch)-1-i)
		}
	}
	return revisions, nil
}

// publishBatch publishes puts as one atomic batch fenced by lease and
// returns the sequence of its last message.
func (b *Bus) publishBatch(ctx context.Context, lease uint64, puts []DesiredPut) (uint64, error) {
	id := nuid.Next()
	for i, p := range puts {
		data, err := proto.Marshal(p.State)
		if err != nil {
			return 0, fmt.Errorf("encode desired state %s: %w", appkey.Join(p.Cluster, p.App), err)
		}
		traceCtx := ctx
		if p.Trace.IsValid() {
			traceCtx = trace.ContextWithSpanContext(ctx, p.Trace)
		}
		msg := &nats.Msg{Subject: kvSubject(DesiredBucket, appkey.Join(p.Cluster, p.App)), Data: data, Header: injectTrace(traceCtx)}
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		msg.Header.Set("Nats-Batch-Id", id)
		msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == 0 {
			msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(lease, 10))
			msg.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, kvSubject(DesiredBucket, leaseKey))
		}
		if i < len(puts)-1 {
			if err := b.nc.PublishMsg(msg); err != nil {
				return 0, err
			}
			continue
		}
		msg.Header.Set("Nats-Batch-Commit", "1")
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
		}
		reply, err := b.nc.RequestMsgWithContext(ctx, msg)
		if err != nil {
			return 0, err
		}
		return batchCommitted(reply.Data, lease, len(puts))
	}
	return 0, nil
}

// maxAck bounds the acknowledgement batchCommitted reads: the server's is
// a line of JSON.
const maxAck = 4 << 10

// batchCommitted reads the server's answer to the commit of an atomic
// batch of n messages fenced by lease, and returns the sequence of its
// last message.
func batchCommitted(data []byte, lease uint64, n int) (uint64, error) {
	if len(data) > maxAck {
		return 0, fmt.Errorf("batch acknowledgement of %d bytes is over the %d limit", len(data), maxAck)
	}
	var ack struct {
		Sequence uint64 `json:"seq"`
		Count    int    `json:"count"`
		Error    *struct {
			Code        int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &ack); err != nil {
		return 0, fmt.Errorf("batch acknowledgement: %w", err)
	}
	switch {
	case ack.Error != nil && (ack.Error.Code == int(jetstream.JSErrCodeStreamWrongLastSequence) || ack.Error.Code == int(jetstream.JSErrCodeStreamWrongLastSequenceConstant)):
		return 0, fmt.Errorf("%w: the lease is no longer at revision %d (%s)", ErrLeaseTaken, lease, ack.Error.Description)
	case ack.Error != nil:
		return 0, fmt.Errorf("server error %d: %s", ack.Error.Code, ack.Error.Description)
	case ack.Count != n:
		return 0, fmt.Errorf("the server committed %d of the batch's %d messages", ack.Count, n)
	case ack.Sequence < uint64(n):
		return 0, fmt.Errorf("the batch's last sequence %d is below its %d messages", ack.Sequence, n)
	}
	return ack.Sequence, nil
}

// wait waits for every future's acknowledgement and records in revisions
// the sequence of each put the server acknowledged; the error names every
// put that failed.
func wait(ctx context.Context, futures []jetstream.PubAckFuture, puts []DesiredPut, revisions []uint64) error {
	var errs []error
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			revisions[i] = ack.Sequence
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("publish desired state %s: %w", appkey.Join(puts[i].Cluster, puts[i].App), err))
		case <-ctx.Done():
			return errors.Join(append(errs, ctx.Err())...)
		}
	}
	return errors.Join(errs...)
}

// LatestDesired reads the newest desired state of every (cluster, app) with
// one short-lived ordered consumer.
func (b *Bus) LatestDesired(ctx context.Context) ([]DesiredEntry, error) {
	w, err := b.desired.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []DesiredEntry
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return out, nil
			}
			if isLeaseKey(e.Key()) {
				continue
			}
			out = append(out, decodeOrEmpty(e.Key(), e.Revision(), e.Value()))
		}
	}
}

// decodeOrEmpty is the entry under key at revision; one whose envelope
// does not decode has a nil State, which no verifier accepts, so one
// garbage message is reported by whoever verifies it instead of failing
// the whole read.
func decodeOrEmpty(key string, revision uint64, data []byte) DesiredEntry {
	entry, err := decodeDesired(key, revision, data, nil)
	if err != nil {
		cluster, app, _ := appkey.Split(key)
		return DesiredEntry{Cluster: cluster, App: app, Revision: revision}
	}
	return entry
}

// GetDesired reads the newest desired state of (cluster, app) with its
// trace context, by a direct get on the stream. It returns ErrNotFound
// (wrapped) when there is none.
func (b *Bus) GetDesired(ctx context.Context, cluster, app string) (DesiredEntry, error) {
	stream, err := b.js.Stream(ctx, "KV_"+DesiredBucket)
	if err != nil {
		return DesiredEntry{}, err
	}
	msg, err := stream.GetLastMsgForSubject(ctx, kvSubject(DesiredBucket, appkey.Join(cluster, app)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DesiredEntry{}, fmt.Errorf("desired state %s: %w", appkey.Join(cluster, app), ErrNotFound)
	}
	if err != nil {
		return DesiredEntry{}, err
	}
	return decodeDesired(appkey.Join(cluster, app), msg.Sequence, msg.Data, msg.Header)
}

// decodeDesired decodes the entry stored under key at revision, with the
// trace context of its headers (nil for none).
func decodeDesired(key string, revision uint64, data []byte, header nats.Header) (DesiredEntry, error) {
	cluster, app, ok := appkey.Split(key)
	if !ok {
		return DesiredEntry{}, fmt.Errorf("desired state key %q is not <cluster>.<app>", key)
	}
	env := &flotillav1.SignedDesiredState{}
	if err := proto.Unmarshal(data, env); err != nil {
		return DesiredEntry{}, fmt.Errorf("desired state %s: %w", key, err)
	}
	tc := extractTrace(header)
	return DesiredEntry{Cluster: cluster, App: app, Revision: revision, State: env, Trace: tc.span, baggage: tc.baggage}, nil
}

// EachRetainedDesired calls fn for every desired state the bucket retains,
// current and historical, with one short-lived ordered consumer. The hub's
// artifact garbage collection uses it to find the digests still referenced.
func (b *Bus) EachRetainedDesired(ctx context.Context, fn func(DesiredEntry)) error {
	return b.scanDesired(ctx, "", fn)
}

// scanDesired reads every message an ordered consumer on the desired-state
// stream has pending and decodes the entries (delete markers skipped).
func (c *Conn) scanDesired(ctx context.Context, filter string, fn func(DesiredEntry)) error {
	return c.drain(ctx, "KV_"+DesiredBucket, filter, jetstream.DeliverAllPolicy, func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		key, ok := desiredKey(msg.Subject())
		if err != nil || !ok || len(msg.Data()) == 0 {
			return // a delete or purge marker
		}
		if entry, err := decodeDesired(key, meta.Sequence.Stream, msg.Data(), msg.Headers()); err == nil {
			fn(entry)
		}
	})
}

// drainInactive is how long the server keeps a read's consumer that its
// reader stopped using without deleting it.
const drainInactive = 30 * time.Second

// drain reads every message stream holds under filter ("" for all) when
// it starts (with jetstream.DeliverLastPerSubjectPolicy, the last of each
// subject), in batches, with a consumer of its own: created with the
// count of what it will read in the server's answer, in memory, with no
// acknowledgements, and deleted when done. That is two JetStream API
// requests per read, which a fleet reconnecting at once multiplies by its
// size (the server drops its whole API queue past 10,000). Ephemeral
// consumers have random names, so another client cannot guess one. A
// read that stops short is an error, never a silently shorter result:
// garbage collection would delete referenced artifacts, a catch-up would
// leave a gap, a history would miss entries. Without a deadline in ctx,
// each request waits up to the client's default of 5 s (no leader for
// the stream: a NATS node just died), and the caller retries.
func (c *Conn) drain(ctx context.Context, stream, filter string, policy jetstream.DeliverPolicy, fn func(jetstream.Msg)) error {
	cons, err := c.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubject: filter, DeliverPolicy: policy, AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, Replicas: 1,
		// The server counts a consumer against its stream's limit until
		// it is deleted: each read deletes its own, and one a reader left
		// behind (it died mid-read) goes once inactive this long.
		InactiveThreshold: drainInactive,
	})
	if err != nil {
		return err
	}
	info := cons.CachedInfo()
	defer func() {
		del, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = c.js.DeleteConsumer(del, stream, info.Name)
	}()
	// A batch waits as long as the read may (ctx's deadline), else 5 s.
	wait := jetstream.FetchMaxWait(5 * time.Second)
	if _, ok := ctx.Deadline(); ok {
		wait = jetstream.FetchContext(ctx)
	}
	for remaining := info.NumPending; remaining > 0; {
		batch, err := cons.Fetch(int(min(remaining, 1000)), wait)
		if err != nil {
			return err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			fn(msg)
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("read of %s stopped with %d messages unread", stream, remaining)
		}
		remaining -= uint64(n)
	}
	return nil
}

// DesiredHistory reads every retained desired state of (cluster, app),
// oldest first. It returns ErrNotFound (wrapped) when there is none.
func (b *Bus) DesiredHistory(ctx context.Context, cluster, app string) ([]DesiredEntry, error) {
	entries, err := b.desired.History(ctx, appkey.Join(cluster, app))
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", appkey.Join(cluster, app), notFound(err))
	}
	out := make([]DesiredEntry, 0, len(entries))
	for _, e := range entries {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		out = append(out, decodeOrEmpty(e.Key(), e.Revision(), e.Value()))
	}
	return out, nil
}

// TrimDesiredHistory keeps the newest keep desired states of (cluster,
// app) and removes the older ones from the bucket's history (an
// Application's revisionHistoryLimit).
func (b *Bus) TrimDesiredHistory(ctx context.Context, cluster, app string, keep int) error {
	stream, err := b.js.Stream(ctx, "KV_"+DesiredBucket)
	if err != nil {
		return err
	}
	key := appkey.Join(cluster, app)
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(kvSubject(DesiredBucket, key)), jetstream.WithPurgeKeep(uint64(max(keep, 1)))); err != nil {
		return fmt.Errorf("trim the history of %s: %w", key, err)
	}
	return nil
}

// FollowDesired calls fn with the newest desired state of every key, then
// with every entry as it is written, until ctx ends; the hub replicas
// follow the bucket this way, whoever writes it. It returns once the
// watch is set up. Entries come in stream order, and a reconnect resumes
// where it stopped.
func (b *Bus) FollowDesired(ctx context.Context, fn func(DesiredEntry)) error {
	_, err := watchKV(ctx, b.desired, func(e jetstream.KeyValueEntry) {
		if !isLeaseKey(e.Key()) {
			fn(decodeOrEmpty(e.Key(), e.Revision(), e.Value()))
		}
	}, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("follow the desired-state bucket: %w", err)
	}
	return nil
}
