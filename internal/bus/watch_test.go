package bus

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/flotilla-dev/flotilla/internal/appkey"
)

// watchTimeout bounds every wait for a delivery: a catch-up after a
// restart can wait for JetStream to recover and one retry.
const watchTimeout = 20 * time.Second

// watchRecorder collects what WatchDesired delivers.
type watchRecorder struct {
	t  *testing.T
	mu sync.Mutex
	// ids are the history ids delivered per key, in order.
	ids map[string][]uint64
	// caughtUp are the keys delivered by a catch-up (with a revision),
	// not as a change notification.
	caughtUp map[string]bool
	// catchUps are how the catch-ups ended, in order: nil or an error,
	// with when the next is tried.
	catchUps []catchUp
	// hold, when set, is called in deliver for each entry: a slow
	// consumer.
	hold func(DesiredEntry)
	// refuse, when set, says which entries deliver refuses.
	refuse func(DesiredEntry) bool
}

type catchUp struct {
	err     error
	retryIn time.Duration
}

// watch runs WatchDesired for cluster on b until the test ends.
func watch(t *testing.T, b *Conn, cluster string, hold func(DesiredEntry)) *watchRecorder {
	return watchRefusing(t, b, cluster, hold, nil)
}

// watchRefusing is watch whose deliver refuses (as an unverified entry)
// what refuse says.
func watchRefusing(t *testing.T, b *Conn, cluster string, hold func(DesiredEntry), refuse func(DesiredEntry) bool) *watchRecorder {
	t.Helper()
	r := &watchRecorder{t: t, ids: map[string][]uint64{}, caughtUp: map[string]bool{}, hold: hold, refuse: refuse}
	done := make(chan error, 1)
	go func() { done <- b.WatchDesired(t.Context(), cluster, r.deliver, r.caughtUpWith) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("WatchDesired: %v", err)
		}
	})
	return r
}

func (r *watchRecorder) deliver(e DesiredEntry) bool {
	key := appkey.Join(e.Cluster, e.App)
	r.mu.Lock()
	r.ids[key] = append(r.ids[key], historyID(r.t, e))
	if e.Revision != 0 {
		r.caughtUp[key] = true
	}
	refused := r.refuse != nil && r.refuse(e)
	r.mu.Unlock()
	if r.hold != nil {
		r.hold(e)
	}
	return !refused
}

func (r *watchRecorder) caughtUpWith(err error, retryIn time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.catchUps = append(r.catchUps, catchUp{err: err, retryIn: retryIn})
}

// outcomes are how the catch-ups so far ended.
func (r *watchRecorder) outcomes() []catchUp {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.catchUps)
}

// waitFor waits until key's history id id was delivered.
func (r *watchRecorder) waitFor(key string, id uint64) {
	r.t.Helper()
	eventually(r.t, watchTimeout, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !slices.Contains(r.ids[key], id) {
			return fmt.Errorf("%s: delivered %v, want %d", key, r.ids[key], id)
		}
		return nil
	})
}

// fromCatchUp reports whether key was delivered by a catch-up.
func (r *watchRecorder) fromCatchUp(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.caughtUp[key]
}

func (r *watchRecorder) delivered() map[string][]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]uint64{}
	for k, v := range r.ids {
		out[k] = slices.Clone(v)
	}
	return out
}

func publish(t *testing.T, b *Bus, cluster, app string, id uint64) {
	t.Helper()
	if _, err := b.PublishDesired(t.Context(), []DesiredPut{{Cluster: cluster, App: app, State: state(t, cluster, app, id)}}); err != nil {
		t.Fatal(err)
	}
}

func TestWatchDesiredDeliversTheNewestThenChanges(t *testing.T) {
	b := newBus(t)
	publish(t, b, "prod-eu", "api-service", 1)
	publish(t, b, "prod-eu", "api-service", 2)
	publish(t, b, "prod-eu", "retired", 1)
	if err := b.desired.Delete(t.Context(), appkey.Join("prod-eu", "retired")); err != nil {
		t.Fatal(err)
	}

	r := watch(t, b.Conn, "prod-eu", nil)
	r.waitFor("prod-eu.api-service", 2)
	publish(t, b, "prod-eu", "worker-service", 1)
	publish(t, b, "staging-1", "api-service", 1) // another cluster's
	publish(t, b, "prod-eu", "api-service", 3)
	r.waitFor("prod-eu.api-service", 3)
	r.waitFor("prod-eu.worker-service", 1)

	// The catch-up at the start delivers the newest entry of each key (not
	// its history, not a deleted key); later ones can arrive twice, if a
	// change raced with the catch-up.
	got := r.delivered()
	for key, ids := range got {
		got[key] = slices.Compact(ids)
	}
	want := map[string][]uint64{"prod-eu.api-service": {2, 3}, "prod-eu.worker-service": {1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delivered history ids (-want +got):\n%s", diff)
	}
}

// TestWatchDesiredCatchUpSkipsReplaysAndRefusals: an old entry put back
// last (a replay), which deliver refuses as older than what its agent
// took, does not hide the newest, and an entry deliver refuses (a forgery)
// gives way to the newest it takes. A key whose last entry deliver takes
// costs no read of its history.
func TestWatchDesiredCatchUpSkipsReplaysAndRefusals(t *testing.T) {
	b := newBus(t)
	publish(t, b, "prod-eu", "api-service", 1)
	publish(t, b, "prod-eu", "api-service", 2)
	publish(t, b, "prod-eu", "api-service", 1) // replayed
	publish(t, b, "prod-eu", "worker", 3)
	publish(t, b, "prod-eu", "worker", 9) // forged: deliver refuses it
	publish(t, b, "prod-eu", "web", 4)
	publish(t, b, "prod-eu", "web", 5)
	r := watchRefusing(t, b.Conn, "prod-eu", nil, func(e DesiredEntry) bool {
		id := historyID(t, e)
		// The agent took api-service's 2 before it restarted.
		return id == 9 || e.App == "api-service" && id < 2
	})
	r.waitFor("prod-eu.api-service", 2)
	r.waitFor("prod-eu.worker", 3)
	r.waitFor("prod-eu.web", 5)
	want := map[string][]uint64{"prod-eu.api-service": {1, 2}, "prod-eu.worker": {9, 3}, "prod-eu.web": {5}}
	if diff := cmp.Diff(want, r.delivered()); diff != "" {
		t.Errorf("delivered history ids (-want +got):\n%s", diff)
	}
}

func TestWatchDesiredCatchesUpAfterAServerRestart(t *testing.T) {
	s := startServer(t)
	b := s.provision(nil)
	// The agent's connection dials only while the gate is open, so the
	// entry below is published while it is surely disconnected; its
	// reconnect handler is the owner's, and must stay so.
	gate := &gatedDialer{}
	var reconnects atomic.Int32
	agentConn := s.connectCluster("prod-eu", nats.SetCustomDialer(gate), nats.ReconnectHandler(func(*nats.Conn) { reconnects.Add(1) }))
	agentBus, err := Open(agentConn)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "prod-eu", "api-service", 1)
	r := watch(t, agentBus, "prod-eu", nil)
	r.waitFor("prod-eu.api-service", 1)

	gate.closed.Store(true)
	s.restart()
	eventually(t, watchTimeout, func() error { // JetStream recovered its streams
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := b.PublishDesired(ctx, []DesiredPut{{Cluster: "prod-eu", App: "api-service", State: state(t, "prod-eu", "api-service", 2)}})
		return err
	})
	if agentConn.IsConnected() {
		t.Fatal("the agent's connection reconnected through a closed gate")
	}
	gate.closed.Store(false)

	r.waitFor("prod-eu.api-service", 2)
	if !r.fromCatchUp("prod-eu.api-service") {
		t.Error("entry 2 did not come from a catch-up")
	}
	eventually(t, watchTimeout, func() error {
		if reconnects.Load() == 0 {
			return fmt.Errorf("the connection's own reconnect handler was not called")
		}
		return nil
	})
}

// TestWatchDesiredRetriesAFailedCatchUp: a catch-up that fails (here the
// desired-state bucket does not exist yet, as before the hub's first
// start) is reported with when it is tried again, and is tried again
// until one succeeds.
func TestWatchDesiredRetriesAFailedCatchUp(t *testing.T) {
	s := startServer(t)
	agentBus, err := Open(s.connectCluster("prod-eu"))
	if err != nil {
		t.Fatal(err)
	}
	r := watch(t, agentBus, "prod-eu", nil)
	eventually(t, watchTimeout, func() error {
		if got := r.outcomes(); len(got) == 0 {
			return fmt.Errorf("no catch-up reported")
		}
		return nil
	})
	if first := r.outcomes()[0]; first.err == nil || first.retryIn <= 0 {
		t.Fatalf("the catch-up without a bucket reported %v, retry in %s; want an error and a retry", first.err, first.retryIn)
	}

	b := s.provision(nil)
	publish(t, b, "prod-eu", "api-service", 1)
	r.waitFor("prod-eu.api-service", 1)
	eventually(t, watchTimeout, func() error {
		got := r.outcomes()
		if last := got[len(got)-1]; last.err != nil {
			return fmt.Errorf("the last catch-up failed: %v", last.err)
		}
		return nil
	})
}

// TestWatchDesiredDefersTheCatchUpWhenNothingChanged: a reconnect after
// which the newest message under the cluster's keys is one the watch saw
// before it lost the connection costs one direct get, and its catch-up
// runs later (recheckAfter), not with the fleet's reconnect; one after
// which it is not catches up at once
// (TestWatchDesiredCatchesUpAfterAServerRestart).
func TestWatchDesiredDefersTheCatchUpWhenNothingChanged(t *testing.T) {
	checked, recheck := make(chan struct{}, 1), make(chan time.Time)
	defaultRecheck := recheckAfter
	recheckAfter = func() <-chan time.Time {
		checked <- struct{}{}
		return recheck
	}
	t.Cleanup(func() { recheckAfter = defaultRecheck })

	s := startServer(t)
	b := s.provision(nil)
	publish(t, b, "prod-eu", "api-service", 1)
	publish(t, b, "prod-eu", "worker", 1)
	if err := b.desired.Delete(t.Context(), appkey.Join("prod-eu", "retired")); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "prod-eu", "api-service", 2)
	nc := s.connectCluster("prod-eu")
	agentBus, err := Open(nc)
	if err != nil {
		t.Fatal(err)
	}
	r := watch(t, agentBus, "prod-eu", nil)
	r.waitFor("prod-eu.api-service", 2)
	publish(t, b, "prod-eu", "worker", 2) // by notification, after the catch-up
	r.waitFor("prod-eu.worker", 2)
	before := r.delivered()

	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-checked: // the reconnect's check found nothing new
	case <-time.After(watchTimeout):
		t.Fatal("the reconnect did not defer its catch-up")
	}
	if diff := cmp.Diff(before, r.delivered()); diff != "" {
		t.Errorf("the reconnect delivered at once what nothing changed (-before +after):\n%s", diff)
	}
	if got := r.outcomes(); len(got) != 1 {
		t.Errorf("catch-ups before the deferred one: %v, want only the first", got)
	}

	recheck <- time.Now()
	eventually(t, watchTimeout, func() error {
		if got := r.outcomes(); len(got) != 2 || got[1].err != nil {
			return fmt.Errorf("catch-ups: %v, want the deferred one too", got)
		}
		return nil
	})
	r.waitFor("prod-eu.worker", 2)
	if !r.fromCatchUp("prod-eu.worker") {
		t.Error("the deferred catch-up did not read worker's newest entry")
	}
}

func TestWatchDesiredCatchesUpAfterDroppedNotifications(t *testing.T) {
	s := startServer(t)
	b := s.provision(nil)
	agentConn := s.connectCluster("prod-eu", nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // slow consumers are expected
	agentBus, err := Open(agentConn)
	if err != nil {
		t.Fatal(err)
	}
	// The "block" entry holds deliver until released: meanwhile more
	// notifications arrive than the subscription buffers.
	// A test that fails before it releases deliver releases it on its way
	// out, so that the watch ends and its cleanup does not wait for ever.
	blocked, release := make(chan struct{}), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	var blockOnce sync.Once
	r := watch(t, agentBus, "prod-eu", func(e DesiredEntry) {
		if e.App == "block" {
			blockOnce.Do(func() { close(blocked) })
			<-release
		}
	})
	publish(t, b, "prod-eu", "ready", 1)
	r.waitFor("prod-eu.ready", 1) // the first catch-up is done
	publish(t, b, "prod-eu", "block", 1)
	select {
	case <-blocked:
	case <-time.After(watchTimeout):
		t.Fatal("the block entry was not delivered")
	}

	const apps = watchBuffer + 150
	before := agentConn.Stats().InMsgs
	puts := make([]DesiredPut, apps)
	for i := range puts {
		app := fmt.Sprintf("app-%03d", i)
		puts[i] = DesiredPut{Cluster: "prod-eu", App: app, State: state(t, "prod-eu", app, 1)}
	}
	if _, err := b.PublishDesired(t.Context(), puts); err != nil {
		t.Fatal(err)
	}
	eventually(t, watchTimeout, func() error { // every notification reached the client, the excess dropped
		if got := agentConn.Stats().InMsgs - before; got < apps {
			return fmt.Errorf("%d of %d notifications received", got, apps)
		}
		return nil
	})
	releaseOnce()

	for i := range apps {
		r.waitFor(fmt.Sprintf("prod-eu.app-%03d", i), 1)
	}
	caughtUp := 0
	for i := range apps {
		if r.fromCatchUp(fmt.Sprintf("prod-eu.app-%03d", i)) {
			caughtUp++
		}
	}
	if caughtUp == 0 {
		t.Error("no entry came from a catch-up: the test dropped no notification")
	}
}
