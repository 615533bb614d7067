package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// entryOpts compares DesiredEntry values: protos by content, span contexts
// with their Equal method, baggage left to the tests that check it.
var entryOpts = cmp.Options{protocmp.Transform(), cmpopts.IgnoreUnexported(DesiredEntry{})}

// spanContext is a sampled span context with fixed ids.
func spanContext(t *testing.T, traceID, spanID string) trace.SpanContext {
	t.Helper()
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(spanID)
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
}

// rawHeaders are the headers the newest message stored under (cluster,
// app) was published with: what travels on the wire. The Nats-* headers a
// direct get adds are left out.
func rawHeaders(t *testing.T, b *Bus, cluster, app string) nats.Header {
	t.Helper()
	stream, err := b.js.Stream(t.Context(), "KV_"+DesiredBucket)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), kvSubject(DesiredBucket, appkey.Join(cluster, app)))
	if err != nil {
		t.Fatal(err)
	}
	maps.DeleteFunc(msg.Header, func(name string, _ []string) bool { return strings.HasPrefix(name, "Nats-") })
	return msg.Header
}

func TestPublishDesiredCarriesTraceContext(t *testing.T) {
	b := newBus(t)
	put := spanContext(t, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
	caller := spanContext(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
	member, _ := baggage.NewMember("tenant", "blue")
	bag, _ := baggage.New(member)
	ctx := baggage.ContextWithBaggage(trace.ContextWithSpanContext(t.Context(), caller), bag)

	// One round trip for a fan-out: a put with its own span, one in the
	// caller's, one to another cluster.
	_, err := b.PublishDesired(ctx, []DesiredPut{
		{Cluster: "prod-eu", App: "api-service", State: state(t, "prod-eu", "api-service", 1), Trace: put},
		{Cluster: "prod-eu", App: "worker-service", State: state(t, "prod-eu", "worker-service", 1)},
		{Cluster: "staging-1", App: "api-service", State: state(t, "staging-1", "api-service", 1), Trace: put},
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		cluster, app string
		wantTrace    trace.SpanContext
		// wantHeader is the W3C traceparent on the wire, lower case as the
		// spec writes it (NATS headers are case-sensitive).
		wantHeader string
	}{
		{cluster: "prod-eu", app: "api-service", wantTrace: put.WithRemote(true), wantHeader: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{cluster: "prod-eu", app: "worker-service", wantTrace: caller.WithRemote(true), wantHeader: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{cluster: "staging-1", app: "api-service", wantTrace: put.WithRemote(true), wantHeader: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	} {
		t.Run(tc.cluster+"/"+tc.app, func(t *testing.T) {
			got, err := b.GetDesired(t.Context(), tc.cluster, tc.app)
			if err != nil {
				t.Fatal(err)
			}
			want := DesiredEntry{Cluster: tc.cluster, App: tc.app, Revision: got.Revision, State: state(t, tc.cluster, tc.app, 1), Trace: tc.wantTrace}
			if diff := cmp.Diff(want, got, entryOpts); diff != "" {
				t.Errorf("GetDesired (-want +got):\n%s", diff)
			}
			if got.Revision == 0 {
				t.Error("Revision is 0, want the stream sequence")
			}
			header := rawHeaders(t, b, tc.cluster, tc.app)
			if diff := cmp.Diff(nats.Header{"traceparent": {tc.wantHeader}, "baggage": {"tenant=blue"}}, header); diff != "" {
				t.Errorf("message headers (-want +got):\n%s", diff)
			}
			if got := baggage.FromContext(got.Context(context.Background())).Member("tenant").Value(); got != "blue" {
				t.Errorf("baggage tenant = %q, want blue", got)
			}
		})
	}
}

func TestPublishDesiredWithoutTraceHasNoHeaders(t *testing.T) {
	b := newBus(t)
	if _, err := b.PublishDesired(t.Context(), []DesiredPut{{Cluster: "prod-eu", App: "api-service", State: state(t, "prod-eu", "api-service", 1)}}); err != nil {
		t.Fatal(err)
	}
	if h := rawHeaders(t, b, "prod-eu", "api-service"); len(h) != 0 {
		t.Errorf("headers = %v, want none", h)
	}
	got, err := b.GetDesired(t.Context(), "prod-eu", "api-service")
	if err != nil {
		t.Fatal(err)
	}
	if got.Trace.IsValid() {
		t.Errorf("Trace = %v, want none", got.Trace)
	}
	type key struct{}
	parent := context.WithValue(t.Context(), key{}, "parent")
	if ctx := got.Context(parent); ctx != parent {
		t.Error("Context of an entry without trace context is not its parent")
	}
}

func TestDesiredEntryContextContinuesTheTrace(t *testing.T) {
	sc := spanContext(t, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
	entry, err := decodeDesired("prod-eu.api-service", 7, mustMarshal(t, state(t, "prod-eu", "api-service", 1)),
		nats.Header{"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	if err != nil {
		t.Fatal(err)
	}
	got := trace.SpanContextFromContext(entry.Context(t.Context()))
	if !got.Equal(sc.WithRemote(true)) {
		t.Errorf("span context = %v, want %v (remote)", got, sc)
	}
	// A canonical header name, as an HTTP-minded writer sends it, is read.
	entry, _ = decodeDesired("prod-eu.api-service", 7, mustMarshal(t, state(t, "prod-eu", "api-service", 1)),
		nats.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	if !entry.Trace.Equal(sc.WithRemote(true)) {
		t.Errorf("from a canonical header name: span context = %v, want %v", entry.Trace, sc)
	}
}

func TestGetDesiredNotFound(t *testing.T) {
	b := newBus(t)
	if _, err := b.PublishDesired(t.Context(), []DesiredPut{{Cluster: "prod-eu", App: "api-service", State: state(t, "prod-eu", "api-service", 1)}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cluster, app string }{
		{"prod-eu", "worker-service"}, // another app of the cluster
		{"staging-1", "api-service"},  // the app in another cluster
	} {
		if _, err := b.GetDesired(t.Context(), tc.cluster, tc.app); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetDesired(%s, %s) = %v, want ErrNotFound", tc.cluster, tc.app, err)
		}
	}
}

func TestLatestDesiredSkipsDeletedKeys(t *testing.T) {
	b := newBus(t)
	for id := uint64(1); id <= 3; id++ {
		if _, err := b.PublishDesired(t.Context(), []DesiredPut{
			{Cluster: "prod-eu", App: "api-service", State: state(t, "prod-eu", "api-service", id)},
			{Cluster: "prod-eu", App: "retired", State: state(t, "prod-eu", "retired", id)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.PublishDesired(t.Context(), []DesiredPut{{Cluster: "staging-1", App: "api-service", State: state(t, "staging-1", "api-service", 1)}}); err != nil {
		t.Fatal(err)
	}
	if err := b.desired.Delete(t.Context(), appkey.Join("prod-eu", "retired")); err != nil {
		t.Fatal(err)
	}

	got, err := b.LatestDesired(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []DesiredEntry{
		{Cluster: "prod-eu", App: "api-service", State: state(t, "prod-eu", "api-service", 3)},
		{Cluster: "staging-1", App: "api-service", State: state(t, "staging-1", "api-service", 1)},
	}
	if diff := cmp.Diff(want, got, entryOpts, cmpopts.IgnoreFields(DesiredEntry{}, "Revision"), sortEntries); diff != "" {
		t.Errorf("LatestDesired (-want +got):\n%s", diff)
	}
}

func TestLatestDesiredOfAnEmptyBucket(t *testing.T) {
	b := newBus(t)
	got, err := b.LatestDesired(t.Context())
	if err != nil || len(got) != 0 {
		t.Errorf("LatestDesired = %v, %v; want none", got, err)
	}
}

// sortEntries compares entries whatever their order.
var sortEntries = cmpopts.SortSlices(func(a, b DesiredEntry) bool {
	return appkey.Join(a.Cluster, a.App) < appkey.Join(b.Cluster, b.App)
})

func TestDesiredHistory(t *testing.T) {
	b := newBus(t)
	for id := uint64(1); id <= 3; id++ {
		if _, err := b.PublishDesired(t.Context(), []DesiredPut{
			{Cluster: "prod-eu", App: "api-service", State: state(t, "prod-eu", "api-service", id)},
			{Cluster: "prod-eu", App: "worker-service", State: state(t, "prod-eu", "worker-service", 10*id)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A deletion marker in the middle of a history is no entry.
	if err := b.desired.Delete(t.Context(), appkey.Join("prod-eu", "worker-service")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishDesired(t.Context(), []DesiredPut{{Cluster: "prod-eu", App: "worker-service", State: state(t, "prod-eu", "worker-service", 40)}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		app     string
		wantIDs []uint64
	}{
		{app: "api-service", wantIDs: []uint64{1, 2, 3}},
		{app: "worker-service", wantIDs: []uint64{10, 20, 30, 40}},
	} {
		t.Run(tc.app, func(t *testing.T) {
			entries, err := b.DesiredHistory(t.Context(), "prod-eu", tc.app)
			if err != nil {
				t.Fatal(err)
			}
			var ids []uint64
			for i, e := range entries {
				ids = append(ids, historyID(t, e))
				if e.Cluster != "prod-eu" || e.App != tc.app {
					t.Errorf("entry %d is of %s/%s", i, e.Cluster, e.App)
				}
				if i > 0 && e.Revision <= entries[i-1].Revision {
					t.Errorf("entry %d has revision %d after %d: not oldest first", i, e.Revision, entries[i-1].Revision)
				}
			}
			if diff := cmp.Diff(tc.wantIDs, ids); diff != "" {
				t.Errorf("history ids (-want +got):\n%s", diff)
			}
		})
	}

	if _, err := b.DesiredHistory(t.Context(), "prod-eu", "never-published"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DesiredHistory of a key never published = %v, want ErrNotFound", err)
	}
}

func TestEachRetainedDesiredReadsEveryEntry(t *testing.T) {
	// A small history makes the bucket drop entries: those are not read.
	s := startServer(t)
	opts := DefaultOptions()
	opts.DesiredHistory = 2
	b := s.provision(&opts)
	for id := uint64(1); id <= 3; id++ {
		if _, err := b.PublishDesired(t.Context(), []DesiredPut{
			{Cluster: "prod-eu", App: "api-service", State: state(t, "prod-eu", "api-service", id)},
			{Cluster: "staging-1", App: "api-service", State: state(t, "staging-1", "api-service", 10*id)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.desired.Delete(t.Context(), appkey.Join("staging-1", "api-service")); err != nil {
		t.Fatal(err)
	}

	var got []string
	err := b.EachRetainedDesired(t.Context(), func(e DesiredEntry) {
		got = append(got, fmt.Sprintf("%s/%s#%d", e.Cluster, e.App, historyID(t, e)))
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	// Two entries per key retained; the staging deletion marker took the
	// place of its oldest retained entry.
	want := []string{"prod-eu/api-service#2", "prod-eu/api-service#3", "staging-1/api-service#30"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("retained entries (-want +got):\n%s", diff)
	}
}

func mustMarshal(t testing.TB, m *flotillav1.SignedDesiredState) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
