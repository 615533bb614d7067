package bus

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Fuzz targets for every decoder of what the bus reads from NATS, where
// anyone allowed to write a bucket or subject can put any bytes: none may
// panic, and what decodes must survive a re-encoding unchanged. Run one
// with, e.g., go test -fuzz FuzzDecodeDesired ./internal/bus.

func FuzzDecodeDesired(f *testing.F) {
	valid := mustMarshal(f, signed(f, &flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 3,
		Artifact: &flotillav1.Artifact{Digest: "sha256:aa", Size: 10}, PublishedAt: timestamppb.Now()}))
	for _, seed := range []struct {
		key                  string
		data                 []byte
		traceparent, baggage string
	}{
		{"prod-eu.api-service", valid, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant=blue"},
		{"prod-eu.api-service", valid, "", ""},
		{"prod-eu.api-service", nil, "", ""},
		{"no-dot", valid, "", ""},
		{"prod-eu.api-service", []byte{0xff, 0x01}, "00-zz-00-01", "=;;,"},
		{"prod-eu.api-service", valid, "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "k=v;p"},
		{".", valid, "00-00000000000000000000000000000000-0000000000000000-00", ""},
	} {
		f.Add(seed.key, seed.data, seed.traceparent, seed.baggage)
	}
	f.Fuzz(func(t *testing.T, key string, data []byte, traceparent, bag string) {
		header := nats.Header{}
		if traceparent != "" {
			header.Set("traceparent", traceparent)
		}
		if bag != "" {
			header.Set("baggage", bag)
		}
		entry, err := decodeDesired(key, 1, data, header)
		if err != nil {
			return
		}
		if got := appkey.Join(entry.Cluster, entry.App); got != key {
			t.Errorf("key %q decoded as %q", key, got)
		}
		if entry.Trace.IsValid() && !entry.Trace.IsRemote() {
			t.Error("a span context from headers is not remote")
		}
		_ = entry.Context(context.Background())
		again, err := decodeDesired(key, 1, mustMarshal(t, entry.State), nil)
		if err != nil {
			t.Fatalf("a decoded entry does not decode once re-encoded: %v", err)
		}
		if !proto.Equal(entry.State, again.State) {
			t.Errorf("re-encoding changed the entry: %v, then %v", entry.State, again.State)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	fuzzDecoder(f, decodeStatus, &flotillav1.AppStatus{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 4,
		Phase: flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED, Health: flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, Message: "synced", ObservedAt: timestamppb.Now(),
		Resources: []*flotillav1.ResourceStatus{{Group: "apps", Kind: "Deployment", Namespace: "production", Name: "api"}}})
}

func FuzzDecodeRegistration(f *testing.F) {
	fuzzDecoder(f, decodeRegistration, &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: "prod-eu", Labels: map[string]string{"env": "production"},
		AgentVersion: "dev", KubernetesVersion: "v1.33.0", Capabilities: []string{"helm", "rollouts"}, StartedAt: timestamppb.Now()})
}

func FuzzDecodeEvent(f *testing.F) {
	fuzzDecoder(f, decodeEvent, &flotillav1.Event{SchemaVersion: 1, Time: timestamppb.Now(), Cluster: "prod-eu", App: "api-service",
		Type: flotillav1.EventType_EVENT_TYPE_WARNING, Reason: flotillav1.ReasonSyncFailed, Message: "dry-run failed", HistoryId: 2, Actor: "agent/prod-eu"})
}

func FuzzDecodeCommand(f *testing.F) {
	cmd, err := proto.Marshal(&flotillav1.AgentCommand{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", Actor: "alice",
		Command: &flotillav1.AgentCommand_Rollout{Rollout: &flotillav1.RolloutCommand{Action: flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE, Full: true}}})
	if err != nil {
		f.Fatal(err)
	}
	fuzzDecoder(f, decodeCommand, &flotillav1.SignedAgentCommand{SchemaVersion: 1, Command: cmd, Signature: &flotillav1.Signature{}})
}

func FuzzDecodeReply(f *testing.F) {
	fuzzDecoder(f, decodeReply, &flotillav1.AgentReply{SchemaVersion: 1, HistoryId: 3, Error: "command refused",
		Diffs: []*flotillav1.ObjectDiff{{Kind: "Deployment", Namespace: "production", Name: "api", Action: "update", Diff: "-1\n+2\n"}}, Objects: []string{"Rollout/production/api"}})
}

// fuzzDecoder fuzzes decode with seeds (encoded), an empty message and
// bytes that are no message.
func fuzzDecoder[M proto.Message](f *testing.F, decode func([]byte) (M, error), seeds ...M) {
	for _, seed := range seeds {
		data, err := proto.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add([]byte{0x0a, 0x80}) // a length that runs past the end
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decode(data)
		if err != nil {
			return
		}
		re, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
		again, err := decode(re)
		if err != nil {
			t.Fatalf("a decoded message does not decode once re-encoded: %v", err)
		}
		if !proto.Equal(m, again) {
			t.Errorf("re-encoding changed the message: %v, then %v", m, again)
		}
	})
}

// FuzzDecodeIdentity: the hub reads identities back from its own bucket;
// whatever is there, decoding never panics, and an identity that decodes
// survives a re-encoding.
func FuzzDecodeIdentity(f *testing.F) {
	f.Add([]byte(`{"name":"prod-eu","labels":{"env":"production"},"userKey":"UABC","createdAt":"2026-12-01T00:00:00Z"}`))
	f.Add([]byte(`{"name":"prod-eu","revokedAt":"2026-12-01T00:00:00Z"}`))
	f.Add([]byte(`{"name":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := decodeIdentity(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(id)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeIdentity(again)
		if err != nil || back.Name != id.Name || back.UserKey != id.UserKey || back.Revoked() != id.Revoked() {
			t.Errorf("identity %+v re-decoded as %+v, %v", id, back, err)
		}
	})
}

// FuzzClaimedHistoryID: the catch-up reads the history id an entry claims
// before anything verifies it.
func FuzzClaimedHistoryID(f *testing.F) {
	f.Add(mustMarshal(f, signed(f, &flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "api", HistoryId: 7})))
	f.Add([]byte{0x12, 0x02, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		env := &flotillav1.SignedDesiredState{}
		if proto.Unmarshal(data, env) != nil {
			return
		}
		_ = claimedHistoryID(env)
	})
}

// FuzzBatchCommitted: the answer to an atomic batch's commit never panics,
// and one taken names a last sequence that leaves room for the batch.
func FuzzBatchCommitted(f *testing.F) {
	f.Add([]byte(`{"stream":"KV_flotilla-desired","seq":42,"batch":"x","count":3}`), 3)
	f.Add([]byte(`{"error":{"code":400,"err_code":10164,"description":"wrong last sequence"}}`), 1)
	f.Add([]byte(`{"seq":1,"count":1000}`), 1000)
	f.Add([]byte(`not json`), 1)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		seq, err := batchCommitted(data, 7, n)
		if err == nil && (n < 0 || seq < uint64(n)) {
			t.Fatalf("took sequence %d for a batch of %d", seq, n)
		}
	})
}
