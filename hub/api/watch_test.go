package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/api/apitest"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// TestWatchFleet reads the stream over apitest.Fleet: the snapshot in the
// CLI's words with the fleet rollouts, then the events as they are appended, then a keep-alive
// once the clock passed 15 s without one.
func TestWatchFleet(t *testing.T) {
	start := time.Date(2026, time.March, 14, 9, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	hub := apitest.Fleet(start)
	path, handler := api.NewHandlerAt(hub, apitest.ClusterTTL, api.NewAuthAt(apitest.Tokens, apitest.SessionKey, now), nil, now, 10*time.Millisecond)
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// Bounded: a message that never comes fails the test, not go test's
	// timeout.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stream, err := client(srv.URL, bearer(apitest.ViewerToken)).WatchFleet(ctx, connect.NewRequest(&flotillav1.WatchFleetRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	next := func(t *testing.T) *flotillav1.WatchFleetResponse {
		t.Helper()
		if !stream.Receive() {
			t.Fatalf("stream ended: %v", stream.Err())
		}
		return stream.Msg()
	}

	t.Run("the first message is the whole fleet in the CLI's words", func(t *testing.T) {
		got := next(t)
		at := func(ago time.Duration) *timestamppb.Timestamp { return timestamppb.New(start.Add(-ago)) }
		want := &flotillav1.WatchFleetResponse{
			Snapshot: true,
			Apps: []*flotillav1.FleetApp{
				{Cluster: "prod-eu", App: "api-service", Sync: "Synced", Health: "Healthy", Phase: "Succeeded", HistoryId: 7, Revision: "aaaaaaaa",
					Pin:     &flotillav1.Pin{By: "otto", At: at(10 * time.Minute), RolledBackTo: 5},
					Rollout: "canary step 2/4, 25 %, Paused, analysis Running", RolloutInProgress: true, Message: "1 configured, 1 unchanged"},
				{Cluster: "prod-eu", App: "worker-service", Sync: "Unknown", Health: "Unknown", HistoryId: 2, Revision: "cccccccc"},
				// The agent reported history 2 of 3, and went offline.
				{Cluster: "staging-1", App: "api-service", Sync: "OutOfSync", Health: "Healthy", Phase: "Succeeded", HistoryId: 3, Revision: "11111111",
					OfflineSince: at(2 * time.Hour), Message: "2 unchanged", ReportedAt: at(2*time.Hour + 30*time.Second)},
			},
			// As GetFleetRollout answers it: its waves, gates and clusters.
			FleetRollouts: []*flotillav1.FleetRollout{hub.FleetRolloutsByName["api-service"]},
		}
		got.Clusters = nil // ListClusters' own test covers ClusterInfo
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("snapshot (-want +got):\n%s", diff)
		}
	})

	t.Run("an appended event comes next, alone", func(t *testing.T) {
		ev := &flotillav1.Event{Cluster: "prod-eu", App: "api-service", Reason: "Synced", Message: "history 8"}
		hub.Append(ev)
		got := next(t)
		if diff := cmp.Diff(&flotillav1.WatchFleetResponse{Events: []*flotillav1.Event{ev}}, got, protocmp.Transform()); diff != "" {
			t.Errorf("message (-want +got):\n%s", diff)
		}
	})

	t.Run("a quiet stream sends an empty message every 15 s", func(t *testing.T) {
		clock.Add(int64(15 * time.Second))
		if diff := cmp.Diff(&flotillav1.WatchFleetResponse{}, next(t), protocmp.Transform()); diff != "" {
			t.Errorf("keep-alive (-want +got):\n%s", diff)
		}
	})
}

// TestWatchFleetNeedsAToken: the stream is refused without one, before
// anything is followed.
func TestWatchFleetNeedsAToken(t *testing.T) {
	hub := apitest.Fleet(time.Now())
	stream, err := client(apitest.Serve(t, hub), "").WatchFleet(t.Context(), connect.NewRequest(&flotillav1.WatchFleetRequest{}))
	if err == nil {
		if stream.Receive() {
			t.Fatal("an unauthenticated stream got a message")
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("stream without a token: %v, want unauthenticated", err)
	}
	if calls := hub.Calls(); len(calls) != 0 {
		t.Errorf("calls to the hub: %v, want none", calls)
	}
}

// TestWatchFleetEndsWithItsSession: a stream opened with the dashboard's
// session ends, Unauthenticated, when the session does; the page then
// asks to sign in again.
func TestWatchFleetEndsWithItsSession(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	url := sessionServer(t, &clock, apitest.Tokens)
	cookie := sessionCookie(t, url, apitest.ViewerToken)
	// The session has a second left, on the server's clock.
	clock.Add(int64(api.SessionLifetime - time.Second))
	stream, err := browser(url, cookie, "same-origin").WatchFleet(t.Context(), connect.NewRequest(&flotillav1.WatchFleetRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() || !stream.Msg().GetSnapshot() {
		t.Fatalf("first message: %v, want a snapshot", stream.Err())
	}
	start := time.Now()
	for stream.Receive() {
	}
	if err := stream.Err(); connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "session expired") {
		t.Errorf("stream ended with %v, want unauthenticated: session expired", err)
	}
	if waited := time.Since(start); waited > 30*time.Second {
		t.Errorf("the stream ended %s after its snapshot, want about a second", waited)
	}
}

// TestWatchFleetEndsWhenEventsOverflow: a stream that falls behind the
// events ends, Unavailable, rather than leave a gap its client cannot see.
func TestWatchFleetEndsWhenEventsOverflow(t *testing.T) {
	hub := apitest.Fleet(time.Now())
	// Bounded: a stream that never overflows would otherwise keep the
	// test waiting for its keep-alives for ever.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := client(apitest.Serve(t, hub), bearer(apitest.ViewerToken)).WatchFleet(ctx, connect.NewRequest(&flotillav1.WatchFleetRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	// Twice the bound and more: should the stream's tick take some of
	// them while they are appended, what is left still overflows it.
	for i := range 2*api.MaxPendingEvents + 2 {
		hub.Append(&flotillav1.Event{Cluster: "prod-eu", Reason: "Synced", Message: fmt.Sprint(i)})
	}
	for stream.Receive() {
	}
	if err := stream.Err(); connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "list the events") {
		t.Errorf("stream ended with %v, want unavailable", err)
	}
}

// TestWatchFleetStreamsAreBounded: past maxWatchStreams at once, a
// replica refuses another as ResourceExhausted.
func TestWatchFleetStreamsAreBounded(t *testing.T) {
	now := time.Now
	path, handler := api.NewHandlerAt(apitest.Fleet(now()), apitest.ClusterTTL, api.NewAuth(apitest.Tokens, apitest.SessionKey), nil, now, time.Hour)
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := client(srv.URL, bearer(apitest.ViewerToken))
	open := func() (*connect.ServerStreamForClient[flotillav1.WatchFleetResponse], error) {
		stream, err := c.WatchFleet(t.Context(), connect.NewRequest(&flotillav1.WatchFleetRequest{}))
		if err != nil {
			return nil, err
		}
		if !stream.Receive() {
			return nil, stream.Err()
		}
		return stream, nil
	}
	for i := range api.MaxWatchStreams {
		stream, err := open()
		if err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
		defer stream.Close()
	}
	if _, err := open(); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("one stream more: %v, want resource_exhausted", err)
	}
}
