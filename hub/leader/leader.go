package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nuid"

	"github.com/flotilla-dev/flotilla/internal/bus"
)

// Store holds the lease (*bus.Bus implements it).
type Store interface {
	GetLease(ctx context.Context) (bus.Lease, error)
	// PutLease writes record (nil releases) if the lease is still at
	// revision expect, to expire ttl after the server stored it; it
	// wraps bus.ErrLeaseTaken when another replica wrote it.
	PutLease(ctx context.Context, record []byte, expect uint64, ttl time.Duration) (uint64, error)
}

// Record is what the leader writes into the lease: who it is, and where
// the other replicas send the calls only the leader serves.
type Record struct {
	Holder string `json:"holder"`
	APIURL string `json:"apiURL"`
	// Instance tells this process from an earlier one of the same replica.
	Instance string `json:"instance"`
}

// maxRecord bounds a lease record: a name, a URL and an id.
const maxRecord = 4 << 10

// parseRecord reads a lease record as another replica wrote it.
func parseRecord(data []byte) (Record, error) {
	var r Record
	if len(data) > maxRecord {
		return r, fmt.Errorf("lease record of %d bytes is over the %d limit", len(data), maxRecord)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("lease record: %w", err)
	}
	if r.Holder == "" {
		return r, errors.New("lease record names no holder")
	}
	return r, nil
}

// Options configure an Elector.
type Options struct {
	// Self is this replica's record; Self.Holder names it among the
	// replicas. New gives it an Instance of its own: a lease held by any
	// other process, an earlier one of this replica too, is waited out,
	// so two processes can never both lead, even under one name.
	Self Record
	// TTL is how long the lease outlives its last renewal (default 6 s):
	// with Retry, it bounds how long the fleet goes without a leader once
	// one dies. The leader renews every TTL/3 and stops acting as leader
	// TTL/6 before its lease could expire.
	TTL time.Duration
	// Retry is how often a follower looks whether the lease is free
	// (default 1 s).
	Retry time.Duration
	Log   *slog.Logger
}

// Elector runs one replica's part in the election.
type Elector struct {
	store Store
	opts  Options
	self  []byte

	// fence is held for reading by fenced writes and for writing by a
	// renewal, which changes the revision they carry.
	fence sync.RWMutex
	mu    sync.Mutex
	// revision and deadline are the lease's while this replica leads:
	// past deadline it no longer writes. revision is 0 otherwise.
	revision uint64
	deadline time.Time
	// holder is the last leader seen (this replica while it leads).
	holder Record
	// changed is closed and replaced whenever holder changes.
	changed chan struct{}
}

// ErrNotLeader is a fenced write attempted by a replica that does not
// hold the lease (or whose lease may have expired).
var ErrNotLeader = errors.New("this hub replica is not the leader")

// New returns an Elector on store; Run takes part in the election.
func New(store Store, opts Options) (*Elector, error) {
	if opts.Self.Holder == "" {
		return nil, errors.New("leader election: the replica needs a name")
	}
	if opts.TTL == 0 {
		opts.TTL = 6 * time.Second
	}
	if opts.Retry == 0 {
		opts.Retry = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.Self.Instance = nuid.Next()
	self, err := json.Marshal(opts.Self)
	if err != nil {
		return nil, err
	}
	return &Elector{store: store, opts: opts, self: self, changed: make(chan struct{})}, nil
}

// Run takes part in the election until ctx ends: whenever this replica
// wins the lease, lead runs with a context that ends when it loses it
// (lead must return then). On the way out, or when lead returns early, a
// held lease is released, so another replica takes over at once.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) {
	for ctx.Err() == nil {
		if revision, deadline, ok := e.acquire(ctx); ok {
			e.lead(ctx, revision, deadline, lead)
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(e.opts.Retry):
		}
	}
}

// acquire takes the lease if it is free: never taken, expired or
// released.
func (e *Elector) acquire(ctx context.Context) (uint64, time.Time, bool) {
	lease, err := e.store.GetLease(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.opts.Log.Warn("leader election: cannot read the lease", "error", err)
		}
		return 0, time.Time{}, false
	}
	if lease.Record != nil {
		holder, err := parseRecord(lease.Record)
		if err != nil {
			e.opts.Log.Warn("leader election: the lease holds an unreadable record; waiting for it to expire", "error", err)
			return 0, time.Time{}, false
		}
		e.observe(holder)
		return 0, time.Time{}, false
	}
	sent := time.Now()
	revision, err := e.store.PutLease(ctx, e.self, lease.Revision, e.opts.TTL)
	if err != nil {
		if !errors.Is(err, bus.ErrLeaseTaken) && ctx.Err() == nil {
			e.opts.Log.Warn("leader election: cannot take the lease", "error", err)
		}
		return 0, time.Time{}, false
	}
	return revision, e.deadlineAfter(sent), true
}

// deadlineAfter is when a lease written at sent stops counting: the
// server expires it TTL after it stored it, which is after sent; TTL/6
// earlier leaves room for the clocks' rates to differ.
func (e *Elector) deadlineAfter(sent time.Time) time.Time {
	return sent.Add(e.opts.TTL - e.opts.TTL/6)
}

// lead runs lead while renewing the lease every TTL/3, and ends it when a
// renewal is refused (another replica holds the lease) or none succeeded
// before the deadline.
func (e *Elector) lead(ctx context.Context, revision uint64, deadline time.Time, lead func(ctx context.Context)) {
	e.mu.Lock()
	e.revision, e.deadline = revision, deadline
	e.mu.Unlock()
	e.observe(e.opts.Self)
	e.opts.Log.Info("leading the hub replicas", "replica", e.opts.Self.Holder, "lease", revision)

	leading, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(leading)
	}()
	renew := time.NewTicker(e.opts.TTL / 3)
	defer renew.Stop()
	expiry := time.NewTimer(time.Until(deadline))
	defer expiry.Stop()
	reason := ""
	for reason == "" {
		select {
		case <-ctx.Done():
			reason = "shutting down"
		case <-done:
			reason = "the leader's work ended"
		case <-expiry.C:
			reason = "no renewal succeeded before the lease's deadline"
		case <-renew.C:
			next, err := e.renew(ctx)
			switch {
			case errors.Is(err, bus.ErrLeaseTaken):
				reason = "another replica took the lease"
			case err != nil:
				e.opts.Log.Warn("leader election: renewal failed; retrying until the lease's deadline", "error", err)
			default:
				expiry.Reset(time.Until(next))
			}
		}
	}
	e.step(reason)
	cancel()
	<-done
	if ctx.Err() != nil || reason == "the leader's work ended" {
		e.release()
	}
}

// renew writes the lease again, holding off fenced writes meanwhile (they
// carry the revision it changes), and returns the new deadline.
func (e *Elector) renew(ctx context.Context) (time.Time, error) {
	e.fence.Lock()
	defer e.fence.Unlock()
	e.mu.Lock()
	revision, deadline := e.revision, e.deadline
	e.mu.Unlock()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	sent := time.Now()
	next, err := e.store.PutLease(ctx, e.self, revision, e.opts.TTL)
	if err != nil {
		return time.Time{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.revision, e.deadline = next, e.deadlineAfter(sent)
	return e.deadline, nil
}

// step ends this replica's leadership: fenced writes fail from now on.
func (e *Elector) step(reason string) {
	e.mu.Lock()
	e.revision = 0
	e.mu.Unlock()
	e.opts.Log.Warn("no longer leading the hub replicas", "replica", e.opts.Self.Holder, "reason", reason)
	e.observe(Record{})
}

// release gives the lease up on shutdown, so a follower need not wait for
// it to expire.
func (e *Elector) release() {
	lease, err := e.store.GetLease(context.Background())
	if err != nil || lease.Record == nil {
		return
	}
	if holder, err := parseRecord(lease.Record); err != nil || holder != e.opts.Self {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := e.store.PutLease(ctx, nil, lease.Revision, time.Second); err != nil {
		e.opts.Log.Warn("leader election: cannot release the lease; it expires by itself", "error", err)
	}
}

// observe records the leader seen, waking Changed's waiters if it is new.
func (e *Elector) observe(holder Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if holder == e.holder {
		return
	}
	e.holder = holder
	close(e.changed)
	e.changed = make(chan struct{})
}

// Leader is the leader last seen (zero when none is known) and whether
// it is this replica, with a channel closed when that changes.
func (e *Elector) Leader() (holder Record, self bool, changed <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder, e.revision != 0, e.changed
}

// Fenced runs write with the lease's revision, which write must put on
// every desired-state write (bus.Bus.PublishDesiredFenced), so the server takes
// them only while this replica holds the lease. It refuses with
// ErrNotLeader when this replica does not lead, and cuts write's context
// off at the lease's deadline.
func (e *Elector) Fenced(ctx context.Context, write func(ctx context.Context, lease uint64) error) error {
	e.fence.RLock()
	defer e.fence.RUnlock()
	e.mu.Lock()
	revision, deadline := e.revision, e.deadline
	e.mu.Unlock()
	if revision == 0 || !time.Now().Before(deadline) {
		return ErrNotLeader
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := write(ctx, revision); err != nil {
		return fmt.Errorf("as leader (lease %d): %w", revision, err)
	}
	return nil
}
