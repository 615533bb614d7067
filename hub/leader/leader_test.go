package leader

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

func newBus(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.Provision(t.Context(), testenv.StartNATS(t).Connect(t), bus.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newElector(t *testing.T, store Store, self Record, ttl, retry time.Duration) *Elector {
	t.Helper()
	e, err := New(store, Options{Self: self, TTL: ttl, Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// partitioned is a Store cut off from the server once cut is set: what a
// leader sees when its network fails or its process stalls.
type partitioned struct {
	Store
	cut atomic.Bool
}

func (p *partitioned) PutLease(ctx context.Context, record []byte, expect uint64, ttl time.Duration) (uint64, error) {
	if p.cut.Load() {
		return 0, errors.New("partitioned")
	}
	return p.Store.PutLease(ctx, record, expect, ttl)
}

// terms records who led when, so a test can check no two terms overlap.
type terms struct {
	mu   sync.Mutex
	list []term
	// started is when each holder's current term began.
	started map[string]time.Time
}

type term struct {
	holder     string
	start, end time.Time
}

func (ts *terms) lead(holder string) func(ctx context.Context) {
	return func(ctx context.Context) {
		start := time.Now()
		ts.mu.Lock()
		if ts.started == nil {
			ts.started = map[string]time.Time{}
		}
		ts.started[holder] = start
		ts.mu.Unlock()
		<-ctx.Done()
		ts.mu.Lock()
		defer ts.mu.Unlock()
		ts.list = append(ts.list, term{holder: holder, start: start, end: time.Now()})
	}
}

func waitLeader(t *testing.T, e *Elector, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		holder, _, changed := e.Leader()
		if holder.Holder == want {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("leader is %q, want %q", holder.Holder, want)
		}
	}
}

func run(t *testing.T, ctx context.Context, e *Elector, lead func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, lead)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// Two replicas: one leads and may write, the other follows and may not;
// the leader shutting down hands the lease over at once.
func TestOneLeaderAtATime(t *testing.T) {
	b := newBus(t)
	ts := &terms{}
	a := newElector(t, b, Record{Holder: "hub-0", APIURL: "https://hub-0:8443"}, 3*time.Second, 100*time.Millisecond)
	stopA := run(t, t.Context(), a, ts.lead("hub-0"))
	waitLeader(t, a, "hub-0")
	c := newElector(t, b, Record{Holder: "hub-1", APIURL: "https://hub-1:8443"}, 3*time.Second, 100*time.Millisecond)
	run(t, t.Context(), c, ts.lead("hub-1"))
	waitLeader(t, c, "hub-0")
	if holder, self, _ := c.Leader(); self || holder.APIURL != "https://hub-0:8443" {
		t.Fatalf("the follower sees %+v (self %v); want hub-0's record", holder, self)
	}
	write := func(e *Elector) error {
		return e.Fenced(t.Context(), func(ctx context.Context, lease uint64) error {
			_, err := b.PublishDesiredFenced(ctx, lease, []bus.DesiredPut{{Cluster: "prod-eu", App: "api", State: nil}})
			return err
		})
	}
	if err := write(c); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the follower's fenced write: %v, want ErrNotLeader", err)
	}
	if err := write(a); err != nil {
		t.Fatalf("the leader's fenced write: %v", err)
	}
	released := time.Now()
	stopA()
	waitLeader(t, c, "hub-1")
	t.Logf("hand-over on shutdown took %s", time.Since(released))
	if err := write(c); err != nil {
		t.Fatalf("the new leader's fenced write: %v", err)
	}
}

// A leader cut off from NATS stops leading before its lease expires on
// the server, and only then does another replica take over: terms never
// overlap, and the deposed leader's fenced writes fail.
func TestACutOffLeaderStepsDownBeforeTheNextLeads(t *testing.T) {
	b := newBus(t)
	ts := &terms{}
	cutOff := &partitioned{Store: b}
	a := newElector(t, cutOff, Record{Holder: "hub-0"}, 2*time.Second, 50*time.Millisecond)
	run(t, t.Context(), a, ts.lead("hub-0"))
	waitLeader(t, a, "hub-0")
	c := newElector(t, b, Record{Holder: "hub-1"}, 2*time.Second, 50*time.Millisecond)
	run(t, t.Context(), c, ts.lead("hub-1"))
	waitLeader(t, c, "hub-0")
	cutOff.cut.Store(true)
	waitLeader(t, c, "hub-1")
	err := a.Fenced(t.Context(), func(context.Context, uint64) error { return nil })
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the deposed leader's fenced write: %v, want ErrNotLeader", err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.list) != 1 || ts.list[0].holder != "hub-0" {
		t.Fatalf("ended terms = %+v; want hub-0's alone", ts.list)
	}
	if _, self, _ := c.Leader(); !self {
		t.Fatal("hub-1 does not lead")
	}
	if next := ts.started["hub-1"]; !next.After(ts.list[0].end) {
		t.Fatalf("hub-1 began leading at %s, before hub-0 stopped at %s", next.Format(time.StampMilli), ts.list[0].end.Format(time.StampMilli))
	}
	t.Logf("hub-0 stepped down at %s; hub-1 began at %s", ts.list[0].end.Format(time.StampMilli), ts.started["hub-1"].Format(time.StampMilli))
}

// A second process under a leader's name (a restart while the first still
// runs, or a configuration mistake) waits the lease out rather than take
// it: two processes never lead at once.
func TestASecondProcessOfAReplicaWaitsTheLeaseOut(t *testing.T) {
	b := newBus(t)
	ts := &terms{}
	first := newElector(t, b, Record{Holder: "hub-0"}, 2*time.Second, 50*time.Millisecond)
	run(t, t.Context(), first, ts.lead("first"))
	waitLeader(t, first, "hub-0")
	second := newElector(t, b, Record{Holder: "hub-0"}, 2*time.Second, 50*time.Millisecond)
	run(t, t.Context(), second, ts.lead("second"))
	waitLeader(t, second, "hub-0") // it read the lease: the first holds it
	for range 3 {                  // several of the second's retries, each a full renewal period of the first
		time.Sleep(700 * time.Millisecond)
		if _, self, _ := second.Leader(); self {
			t.Fatal("the second process took the lease its namesake holds")
		}
		if _, self, _ := first.Leader(); !self {
			t.Fatal("the first process lost its lease to its namesake")
		}
	}
}
