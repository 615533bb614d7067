package flotillav1_test

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// TestOlderReaderKeepsUnknownFields writes a DesiredState as a newer hub
// would (with a field this reader does not know) and checks an older reader
// decodes everything it knows and carries the unknown field through.
func TestOlderReaderKeepsUnknownFields(t *testing.T) {
	known := &flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 42}
	data, err := proto.Marshal(known)
	if err != nil {
		t.Fatal(err)
	}
	// Field 999, a string a future schema version might add.
	data = protowire.AppendTag(data, 999, protowire.BytesType)
	data = protowire.AppendString(data, "from the future")

	var got flotillav1.DesiredState
	if err := proto.Unmarshal(data, &got); err != nil {
		t.Fatalf("older reader failed on a newer message: %v", err)
	}
	if got.GetCluster() != "prod-eu" || got.GetApp() != "api-service" || got.GetHistoryId() != 42 {
		t.Fatalf("known fields lost: %v", &got)
	}
	if len(got.ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("unknown field dropped; re-publishing would lose it")
	}
}
