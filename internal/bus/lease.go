package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaseKey is the key of the hub leader's lease. It lives in the
// desired-state bucket, so that every desired-state write can be fenced by
// it (PublishDesiredFenced): JetStream checks a message's expected last
// sequence only against subjects of the stream it is written to. Its
// cluster token cannot be a cluster's name, so no cluster can read it.
const leaseKey = HubEventsCluster + ".leader"

// isLeaseKey reports whether a desired-state bucket key is the lease's,
// which the readers of desired states skip.
func isLeaseKey(key string) bool { return strings.HasPrefix(key, HubEventsCluster+".") }

// Lease is the newest record of the hub leader's lease.
type Lease struct {
	// Record is what the holder wrote; nil when the lease is free (never
	// taken, expired or released).
	Record []byte
	// Revision is the lease's sequence in the stream, which the next
	// PutLease expects; 0 when it never was or is gone entirely.
	Revision uint64
}

// GetLease reads the lease. A record the server expired (its TTL ran out)
// or a holder released reads as free, with the revision of that marker.
func (b *Bus) GetLease(ctx context.Context) (Lease, error) {
	stream, err := b.js.Stream(ctx, "KV_"+DesiredBucket)
	if err != nil {
		return Lease{}, err
	}
	msg, err := stream.GetLastMsgForSubject(ctx, kvSubject(DesiredBucket, leaseKey))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Lease{}, nil
	}
	if err != nil {
		return Lease{}, err
	}
	if len(msg.Data) == 0 || msg.Header.Get(jetstream.MarkerReasonHeader) != "" || msg.Header.Get("KV-Operation") != "" {
		return Lease{Revision: msg.Sequence}, nil
	}
	return Lease{Record: msg.Data, Revision: msg.Sequence}, nil
}

// ErrLeaseTaken is a PutLease whose expected revision is no longer the
// lease's: another replica wrote it.
var ErrLeaseTaken = errors.New("the lease was written by another replica")

// PutLease writes record (nil releases the lease) if the lease is still at
// revision expect, to expire ttl after the server stored it, and returns
// its new revision.
func (b *Bus) PutLease(ctx context.Context, record []byte, expect uint64, ttl time.Duration) (uint64, error) {
	msg := &nats.Msg{Subject: kvSubject(DesiredBucket, leaseKey), Data: record}
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithMsgTTL(ttl))
	if wrongLastSequence(err) {
		return 0, fmt.Errorf("%w (expected revision %d)", ErrLeaseTaken, expect)
	}
	if err != nil {
		return 0, fmt.Errorf("write the lease: %w", err)
	}
	return ack.Sequence, nil
}

// wrongLastSequence reports whether err is the server refusing a write
// whose expected last sequence is not the subject's (10071 on R1 streams,
// 10164 on replicated ones).
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
