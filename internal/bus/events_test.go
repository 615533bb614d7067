package bus

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func event(cluster, app, reason string) *flotillav1.Event {
	return &flotillav1.Event{SchemaVersion: 1, Cluster: cluster, App: app, Type: flotillav1.EventType_EVENT_TYPE_NORMAL, Reason: reason, Message: reason + " " + app}
}

func TestEventsFiltersByClusterAndApp(t *testing.T) {
	b := newBus(t)
	var (
		apiSynced    = event("prod-eu", "api-service", flotillav1.ReasonSyncSucceeded)
		workerFailed = event("prod-eu", "worker-service", flotillav1.ReasonSyncFailed)
		stagingSync  = event("staging-1", "api-service", flotillav1.ReasonSyncSucceeded)
		apiHealth    = event("prod-eu", "api-service", flotillav1.ReasonHealthChanged)
		// The hub's own events have no cluster; an event about no app is
		// about the cluster (or hub) as a whole.
		gitFailed = event("", "", flotillav1.ReasonGitFetchFailed)
		appBroken = event("", "worker-service", flotillav1.ReasonAppInvalid)
	)
	if err := b.AppendEvents(t.Context(), []*flotillav1.Event{apiSynced, workerFailed, stagingSync}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*flotillav1.Event{apiHealth, gitFailed, appBroken} {
		if err := b.AppendEvent(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	// Something that is not an event, on an events subject, is skipped.
	if _, err := b.js.Publish(t.Context(), eventSubject("prod-eu", "api-service"), []byte{0xff}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, cluster, app string
		limit              int
		want               []*flotillav1.Event
	}{
		{name: "one app, oldest first", cluster: "prod-eu", app: "api-service", limit: 10, want: []*flotillav1.Event{apiSynced, apiHealth}},
		{name: "the newest within the limit", cluster: "prod-eu", app: "api-service", limit: 1, want: []*flotillav1.Event{apiHealth}},
		{name: "a cluster", cluster: "prod-eu", app: "*", limit: 10, want: []*flotillav1.Event{apiSynced, workerFailed, apiHealth}},
		{name: "an app in every cluster", cluster: "*", app: "api-service", limit: 10, want: []*flotillav1.Event{apiSynced, stagingSync, apiHealth}},
		{name: "the hub as a whole", cluster: HubEventsCluster, app: "_", limit: 10, want: []*flotillav1.Event{gitFailed}},
		{name: "the hub about an app", cluster: HubEventsCluster, app: "worker-service", limit: 10, want: []*flotillav1.Event{appBroken}},
		{name: "nothing", cluster: "prod-us", app: "*", limit: 10, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.Events(t.Context(), tc.cluster, tc.app, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Events(%s, %s, %d) (-want +got):\n%s", tc.cluster, tc.app, tc.limit, diff)
			}
		})
	}
}

// TestFollowEvents: events appended after FollowEvents returns reach fn in
// order, the ones before do not, and neither does what is no event or an
// event written to another cluster's subject.
func TestFollowEvents(t *testing.T) {
	b := newBus(t)
	before := event("prod-eu", "api-service", flotillav1.ReasonSyncSucceeded)
	if err := b.AppendEvent(t.Context(), before); err != nil {
		t.Fatal(err)
	}
	got := make(chan *flotillav1.Event, 10)
	if err := b.FollowEvents(t.Context(), func(ev *flotillav1.Event) { got <- ev }); err != nil {
		t.Fatal(err)
	}
	forged, err := proto.Marshal(event("staging-1", "api-service", flotillav1.ReasonSyncFailed))
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{{0xff}, forged} {
		if _, err := b.js.Publish(t.Context(), eventSubject("prod-eu", "api-service"), data); err != nil {
			t.Fatal(err)
		}
	}
	want := []*flotillav1.Event{event("prod-eu", "worker-service", flotillav1.ReasonSyncFailed), event("", "", flotillav1.ReasonGitFetchFailed)}
	if err := b.AppendEvents(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	var followed []*flotillav1.Event
	for range want {
		select {
		case ev := <-got:
			followed = append(followed, ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("followed %d events in 10 s, want %d", len(followed), len(want))
		}
	}
	if diff := cmp.Diff(want, followed, protocmp.Transform()); diff != "" {
		t.Errorf("followed (-want +got):\n%s", diff)
	}
	select {
	case ev := <-got:
		t.Errorf("followed one more: %v", ev)
	default:
	}
}

func TestAppendEventCarriesTheTraceContext(t *testing.T) {
	b := newBus(t)
	sc := spanContext(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
	if err := b.AppendEvent(trace.ContextWithSpanContext(t.Context(), sc), event("prod-eu", "api-service", flotillav1.ReasonSyncSucceeded)); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendEvent(t.Context(), event("prod-eu", "worker-service", flotillav1.ReasonSyncSucceeded)); err != nil {
		t.Fatal(err)
	}
	stream, err := b.js.Stream(t.Context(), EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		app  string
		want string
	}{
		{app: "api-service", want: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{app: "worker-service", want: ""}, // no trace, no header
	} {
		msg, err := stream.GetLastMsgForSubject(t.Context(), eventSubject("prod-eu", tc.app))
		if err != nil {
			t.Fatal(err)
		}
		if got := msg.Header.Get("traceparent"); got != tc.want {
			t.Errorf("%s: traceparent = %q, want %q", tc.app, got, tc.want)
		}
	}
}
