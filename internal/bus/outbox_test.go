package bus

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// TestOutboxKeepsWhatNATSMissedAndSendsItOnReturn: while the server is
// down an agent's statuses and events are kept (the newest status per
// application, the newest events), its own reads see the kept status,
// and once the server is back everything reaches the hub, in order, with
// the events that did not fit counted.
func TestOutboxKeepsWhatNATSMissedAndSendsItOnReturn(t *testing.T) {
	s := startServer(t)
	hub := s.provision(nil)
	agent, err := Open(s.connectCluster("prod-eu"))
	if err != nil {
		t.Fatal(err)
	}
	out := NewOutbox(agent, "prod-eu", 3)
	ev := func(i int) *flotillav1.Event {
		return &flotillav1.Event{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", Reason: flotillav1.ReasonHealthChanged, Message: fmt.Sprintf("event %d", i)}
	}
	if err := out.PutStatus(t.Context(), appStatus("prod-eu", "api-service", 1, flotillav1.SyncPhase_SYNC_PHASE_RUNNING)); err != nil {
		t.Fatalf("with the server up: %v", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(out.AppendEvent(t.Context(), ev(0)))

	s.stop()
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	newest := appStatus("prod-eu", "api-service", 2, flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED)
	for _, st := range []*flotillav1.AppStatus{appStatus("prod-eu", "api-service", 2, flotillav1.SyncPhase_SYNC_PHASE_RUNNING), newest,
		appStatus("prod-eu", "worker", 5, flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED)} {
		if err := out.PutStatus(short(), st); err == nil {
			t.Fatal("a status sent with the server down")
		}
	}
	for i := 1; i <= 5; i++ {
		_ = out.AppendEvent(short(), ev(i))
	}
	if st, ev := out.Pending(); st != 2 || ev != 3 {
		t.Fatalf("kept %d statuses and %d events, want the newest of 2 applications and 3 events", st, ev)
	}
	got, err := out.GetStatus(short(), "prod-eu", "api-service")
	if err != nil || got.GetHistoryId() != 2 || got.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
		t.Fatalf("the agent reads back %v (%v), want the kept newest", got, err)
	}

	// Run tells when its flushes start failing and when one succeeds
	// again, not every attempt.
	var mu sync.Mutex
	var flushes []error
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go out.Run(ctx, 50*time.Millisecond, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		flushes = append(flushes, err)
	})
	reported := func() []error {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(flushes)
	}
	eventually(t, 30*time.Second, func() error {
		if len(reported()) == 0 {
			return fmt.Errorf("no failed flush reported")
		}
		return nil
	})
	time.Sleep(time.Second) // more failed flushes, each 50 ms apart and up to 250 ms long
	s.start()
	eventually(t, 30*time.Second, func() error {
		if st, ev := out.Pending(); st+ev > 0 {
			return fmt.Errorf("still kept: %d statuses, %d events", st, ev)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() error {
		got := reported()
		if len(got) != 2 || got[0] == nil || got[1] != nil {
			return fmt.Errorf("flushes reported %v, want a failure, then a success", got)
		}
		return nil
	})
	stored, err := hub.GetStatus(t.Context(), "prod-eu", "api-service")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(newest, stored, protocmp.Transform()); diff != "" {
		t.Errorf("stored status (-want +got):\n%s", diff)
	}
	if _, err := hub.GetStatus(t.Context(), "prod-eu", "worker"); err != nil {
		t.Errorf("worker's status: %v", err)
	}
	events, err := hub.Events(t.Context(), "prod-eu", "*", 100)
	if err != nil {
		t.Fatal(err)
	}
	var messages []string
	for _, e := range events {
		messages = append(messages, e.GetReason()+": "+e.GetMessage())
	}
	want := []string{"HealthChanged: event 0", "EventsDropped: 2 events were dropped while NATS was unreachable (the newest 3 were kept)",
		"HealthChanged: event 3", "HealthChanged: event 4", "HealthChanged: event 5"}
	if diff := cmp.Diff(want, messages); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
