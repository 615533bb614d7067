package publish

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-dev/flotilla/hub/discovery"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// newPublisher provisions the buckets on an embedded NATS server and
// returns them with a signer and a Publisher using it.
func newPublisher(t *testing.T) (*bus.Bus, *signing.Signer, *Publisher) {
	t.Helper()
	n := testenv.StartNATS(t)
	b, err := bus.Provision(t.Context(), n.Connect(t), bus.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	keys := signing.NewKeySet(key)
	return b, keys.Signer, New(b, keys, slog.Default())
}

func TestCollectGarbageKeepsReferencedArtifacts(t *testing.T) {
	b, signer, p := newPublisher(t)

	referencedOld, referencedNew, orphan := []byte("old"), []byte("new"), []byte("orphan")
	for _, data := range [][]byte{referencedOld, referencedNew, orphan} {
		if _, err := b.PutArtifact(t.Context(), artifact.Digest(data), data); err != nil {
			t.Fatal(err)
		}
	}
	// Two history entries of one key: the old one still allows a rollback,
	// so its artifact must survive.
	for i, data := range [][]byte{referencedOld, referencedNew} {
		env, err := signer.Sign(&flotillav1.DesiredState{Cluster: "prod-eu", App: "api-service", HistoryId: uint64(i + 1),
			Artifact: &flotillav1.Artifact{Digest: artifact.Digest(data)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.PublishDesired(t.Context(), []bus.DesiredPut{{Cluster: "prod-eu", App: "api-service", State: env}}); err != nil {
			t.Fatal(err)
		}
	}
	deleted, err := p.CollectGarbage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if deleted != 1 {
		t.Errorf("deleted %d artifacts, want 1", deleted)
	}
	for _, data := range [][]byte{referencedOld, referencedNew} {
		if _, err := b.GetArtifact(t.Context(), artifact.Digest(data)); err != nil {
			t.Errorf("referenced artifact %s was collected: %v", data, err)
		}
	}
	if _, err := b.GetArtifact(t.Context(), artifact.Digest(orphan)); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("orphan artifact: %v, want not found", err)
	}
}

func TestEntryRefusesWhatCannotBeRolledBackTo(t *testing.T) {
	b, signer, p := newPublisher(t)
	collected, kept := []byte("collected"), []byte("kept")
	if _, err := b.PutArtifact(t.Context(), artifact.Digest(kept), kept); err != nil {
		t.Fatal(err)
	}
	for _, ds := range []*flotillav1.DesiredState{
		{Cluster: "prod-eu", App: "api-service", HistoryId: 1, Artifact: &flotillav1.Artifact{Digest: artifact.Digest(collected)}},
		{Cluster: "prod-eu", App: "api-service", HistoryId: 2, Artifact: &flotillav1.Artifact{Digest: artifact.Digest(kept)}},
		{Cluster: "prod-eu", App: "api-service", HistoryId: 3, Artifact: &flotillav1.Artifact{Digest: artifact.Digest(kept)}, Deletion: &flotillav1.Deletion{}},
	} {
		env, err := signer.Sign(ds)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.PublishDesired(t.Context(), []bus.DesiredPut{{Cluster: "prod-eu", App: "api-service", State: env}}); err != nil {
			t.Fatal(err)
		}
	}
	if ds, err := p.Entry(t.Context(), "prod-eu", "api-service", 2); err != nil || ds.GetHistoryId() != 2 {
		t.Errorf("Entry(2) = %v, %v", ds, err)
	}
	for id, want := range map[uint64]error{1: ErrNotRollbackable, 3: ErrNotRollbackable, 99: ErrNoEntry} {
		if _, err := p.Entry(t.Context(), "prod-eu", "api-service", id); !errors.Is(err, want) {
			t.Errorf("Entry(%d): %v, want %v", id, err, want)
		}
	}
	if _, err := p.Entry(t.Context(), "prod-eu", "api-service", 1); err == nil || !strings.Contains(err.Error(), "garbage-collected") {
		t.Errorf("Entry(1) does not say the artifact is gone: %v", err)
	}
	// Git's desired state is not known before a reconcile: no rollback.
	target, _ := p.Entry(t.Context(), "prod-eu", "api-service", 2)
	if _, err := p.Rollback(t.Context(), target, "oncall", ""); !errors.Is(err, ErrNotReconciled) {
		t.Errorf("Rollback before any Publish: %v, want ErrNotReconciled", err)
	}
}

// TestForgedEntriesOnTheBus: on the real bucket, an unsigned newest entry
// claiming history id 2^64-1 and an artifact its writer uploaded neither
// moves the history ids after a restart nor can be rolled back to.
func TestForgedEntriesOnTheBus(t *testing.T) {
	b, _, p := newPublisher(t)
	ctx := t.Context()
	mustPublish(t, p, "1")
	mustPublish(t, p, "2")
	evil := []byte("evil")
	if _, err := b.PutArtifact(ctx, artifact.Digest(evil), evil); err != nil {
		t.Fatal(err)
	}
	forged := forgeries(t, p.Keys().Signer, math.MaxUint64, artifact.Digest(evil))[0] // unsigned
	if _, err := b.PublishDesired(ctx, []bus.DesiredPut{{Cluster: "prod-eu", App: "web", State: forged.env}}); err != nil {
		t.Fatal(err)
	}

	restarted := New(b, p.Keys(), slog.Default())
	if err := restarted.Load(ctx); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, restarted, "2") // signs entry 2 again, as 3
	if id := restarted.Latest("prod-eu", "web").GetHistoryId(); id != 3 {
		t.Errorf("after a restart the hub published history %d, want 3", id)
	}
	if _, err := restarted.Entry(ctx, "prod-eu", "web", math.MaxUint64); !errors.Is(err, ErrNotRollbackable) || !errors.Is(err, signing.ErrBadSignature) {
		t.Errorf("rollback to the forged entry: %v, want it refused as not verifying", err)
	}
	if latest, err := b.GetDesired(ctx, "prod-eu", "web"); err != nil {
		t.Fatal(err)
	} else if _, err := p.Keys().Verifier.Verify(latest.State); err != nil {
		t.Errorf("the bus's newest entry does not verify: %v", err)
	}
}

// TestPublishLeavesHeldClustersAlone: a revoked cluster drops out of
// discovery's targets, and what was published for it stays as it is: no
// signed deletion tells a cluster that may still be connected to delete
// its workloads. Without the hold, the same pass deletes.
func TestPublishLeavesHeldClustersAlone(t *testing.T) {
	for _, tc := range []struct {
		name        string
		held        map[string]bool
		wantDeleted []string
	}{
		{"held", map[string]bool{"prod-eu": true}, nil},
		{"not held", nil, []string{"prod-eu.web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(newMemStore(), signing.NewKeySet(newKey(t)), slog.Default())
			mustPublish(t, p, "1")
			r, err := p.Publish(t.Context(), &discovery.Result{}, tc.held, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantDeleted, r.Deleted); diff != "" {
				t.Errorf("deleted (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSmallArtifactsTravelInline: an archive of at most artifact.MaxInline
// bytes travels in the signed desired state, so agents need not fetch it;
// a larger one goes by its digest alone. Both are stored, and the hub's
// own view of the latest states keeps no inline copy.
func TestSmallArtifactsTravelInline(t *testing.T) {
	store := newMemStore()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	keys := signing.NewKeySet(key)
	noise := make([]byte, 2*artifact.MaxInline)
	_, _ = rand.Read(noise)
	for _, tc := range []struct {
		name, value string
		inline      bool
	}{
		{"small", "1", true},
		{"larger than MaxInline", hex.EncodeToString(noise), false},
	} {
		p := restart(t, store, keys)
		if _, err := p.Publish(t.Context(), discover(t, tc.value), nil, nil); err != nil {
			t.Fatal(err)
		}
		ds, err := p.verify(store.newest(t, "prod-eu", "web"))
		if err != nil {
			t.Fatal(err)
		}
		stored, ok := store.artifacts[ds.GetArtifact().GetDigest()]
		if !ok {
			t.Fatalf("%s: artifact %s not stored", tc.name, ds.GetArtifact().GetDigest())
		}
		inline := ds.GetArtifact().GetInline()
		if tc.inline && !bytes.Equal(inline, stored) || !tc.inline && len(inline) != 0 {
			t.Errorf("%s (%d bytes): inline %d bytes, want inline %v", tc.name, len(stored), len(inline), tc.inline)
		}
		if n := len(p.Latest("prod-eu", "web").GetArtifact().GetInline()); n != 0 {
			t.Errorf("%s: the hub's view keeps %d inline bytes", tc.name, n)
		}
	}
}
