package publish

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func mustPublish(t *testing.T, p *Publisher, value string) *Report {
	t.Helper()
	r, err := p.Publish(t.Context(), discover(t, value), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustSign(t *testing.T, signer *signing.Signer, ds *flotillav1.DesiredState) *flotillav1.SignedDesiredState {
	t.Helper()
	env, err := signer.Sign(ds)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// forgery is an entry put into the bucket by someone who can write to it
// but does not hold the hub's key, and the error verifying it must give.
type forgery struct {
	name string
	env  *flotillav1.SignedDesiredState
	want error
}

// forgeries claim history id id for prod-eu/web and reference digest, an
// artifact the forger uploaded.
func forgeries(t *testing.T, hub *signing.Signer, id uint64, digest string) []forgery {
	t.Helper()
	ds := &flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "web", HistoryId: id, Artifact: &flotillav1.Artifact{Digest: digest}}
	payload, err := proto.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := proto.Clone(ds).(*flotillav1.DesiredState)
	elsewhere.Cluster = "prod-us"
	return []forgery{
		{"unsigned", &flotillav1.SignedDesiredState{SchemaVersion: 1, DesiredState: payload}, signing.ErrBadSignature},
		{"signed by an unknown key", mustSign(t, signing.NewSigner(newKey(t)), ds), signing.ErrUnknownKey},
		{"signed by the hub for prod-us/web", mustSign(t, hub, elsewhere), ErrMisfiled},
	}
}

// TestLoadIgnoresForgedNewestEntry: a forged newest entry claiming history
// id 2^64-1 neither moves the next history id nor wraps it to 0; the hub
// continues from its own newest entry and publishes it again, so agents
// get a verified newest entry.
func TestLoadIgnoresForgedNewestEntry(t *testing.T) {
	keys := signing.NewKeySet(newKey(t))
	cases := forgeries(t, keys.Signer, math.MaxUint64, "sha256:evil")
	cmd, err := keys.Signer.SignCommand(&flotillav1.AgentCommand{SchemaVersion: 1, Cluster: "prod-eu", App: "web", Actor: "mallory",
		Command: &flotillav1.AgentCommand_Sync{Sync: &flotillav1.SyncCommand{}}})
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, forgery{"a command the hub signed, replayed as a desired state",
		&flotillav1.SignedDesiredState{SchemaVersion: 1, DesiredState: cmd.GetCommand(), Signature: cmd.GetSignature()}, signing.ErrBadSignature})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := newMemStore()
			p := New(store, keys, slog.Default())
			mustPublish(t, p, "1")
			mustPublish(t, p, "2")
			store.put("prod-eu", "web", tc.env)

			p = restart(t, store, keys)
			if got := p.Latest("prod-eu", "web").GetHistoryId(); got != 2 {
				t.Fatalf("after Load the latest history id is %d, want 2 (the hub's own)", got)
			}
			r := mustPublish(t, p, "2")
			if diff := cmp.Diff([]string{appkey.Join("prod-eu", "web")}, r.Resigned); diff != "" {
				t.Errorf("Resigned (-want +got):\n%s", diff)
			}
			ds, err := keys.Verifier.Verify(store.newest(t, "prod-eu", "web").State)
			if err != nil || ds.GetHistoryId() != 3 {
				t.Fatalf("the bus's newest entry: history %d, %v; want 3, verified", ds.GetHistoryId(), err)
			}
			if r := mustPublish(t, p, "3"); len(r.Resigned) != 0 || p.Latest("prod-eu", "web").GetHistoryId() != 4 {
				t.Errorf("a Git change after the re-sign: %+v, history %d; want 4, nothing re-signed", r, p.Latest("prod-eu", "web").GetHistoryId())
			}
		})
	}
}

// TestEntryRefusesUnverifiedEntries: a rollback to an entry the hub did
// not sign for this key is refused, though its artifact is stored; one to
// an id that a forged entry also claims gets the hub's own entry.
func TestEntryRefusesUnverifiedEntries(t *testing.T) {
	store, keys := newMemStore(), signing.NewKeySet(newKey(t))
	p := New(store, keys, slog.Default())
	mustPublish(t, p, "1")
	mustPublish(t, p, "2")
	evil := []byte("evil")
	if _, err := store.PutArtifact(t.Context(), artifact.Digest(evil), evil); err != nil {
		t.Fatal(err)
	}
	const forgedID = 100
	for _, tc := range forgeries(t, keys.Signer, forgedID, artifact.Digest(evil)) {
		t.Run(tc.name, func(t *testing.T) {
			store.put("prod-eu", "web", tc.env)
			_, err := p.Entry(t.Context(), "prod-eu", "web", forgedID)
			var uerr *UnverifiedError
			if !errors.Is(err, ErrNotRollbackable) || !errors.Is(err, tc.want) || !errors.As(err, &uerr) {
				t.Fatalf("Entry(%d) = %v, want ErrNotRollbackable, %v and an *UnverifiedError", forgedID, err, tc.want)
			}
			if want := "history entry 100 of prod-eu/web does not verify: "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Entry(%d): %q, want it to start %q", forgedID, err, want)
			}
		})
	}

	// Entry 1 exists twice, the hub's and a forgery: the hub's wins.
	store.put("prod-eu", "web", forgeries(t, keys.Signer, 1, artifact.Digest(evil))[0].env)
	ds, err := p.Entry(t.Context(), "prod-eu", "web", 1)
	if err != nil || ds.GetArtifact().GetDigest() == artifact.Digest(evil) {
		t.Fatalf("Entry(1) = %v, %v; want the hub's entry 1", ds, err)
	}
	rolled, err := p.Rollback(t.Context(), ds, "oncall", "")
	if err != nil || rolled.GetHistoryId() != 3 {
		t.Errorf("rollback to the hub's entry 1: history %d, %v; want 3", rolled.GetHistoryId(), err)
	}
}

// TestCollectGarbageIgnoresUnverifiedEntries: an artifact only a forged
// entry references is collected; the hub's references keep theirs.
func TestCollectGarbageIgnoresUnverifiedEntries(t *testing.T) {
	store, keys := newMemStore(), signing.NewKeySet(newKey(t))
	p := New(store, keys, slog.Default())
	mustPublish(t, p, "1")
	evil := []byte("evil")
	if _, err := store.PutArtifact(t.Context(), artifact.Digest(evil), evil); err != nil {
		t.Fatal(err)
	}
	for _, f := range forgeries(t, keys.Signer, 9, artifact.Digest(evil)) {
		store.put("prod-eu", "web", f.env)
	}
	deleted, err := p.CollectGarbage(t.Context())
	if err != nil || deleted != 1 {
		t.Fatalf("CollectGarbage = %d, %v; want the forged entries' artifact deleted", deleted, err)
	}
	if ok, _ := store.HasArtifact(t.Context(), artifact.Digest(evil)); ok {
		t.Error("the artifact only forged entries reference survived")
	}
	if ok, _ := store.HasArtifact(t.Context(), p.Latest("prod-eu", "web").GetArtifact().GetDigest()); !ok {
		t.Error("the hub's artifact was collected")
	}
}

// TestLoadRefusesWhatNoTrustedKeySigned: a hub started with another key
// than the one that signed the bus (a wrong backup restored, the previous
// key dropped too early) refuses to start and says which keys are involved.
func TestLoadRefusesWhatNoTrustedKeySigned(t *testing.T) {
	store, signedWith := newMemStore(), signing.NewKeySet(newKey(t))
	mustPublish(t, New(store, signedWith, slog.Default()), "1")

	wrong := signing.NewKeySet(newKey(t))
	err := New(store, wrong, slog.Default()).Load(t.Context())
	if !errors.Is(err, ErrUntrustedBus) {
		t.Fatalf("Load: %v, want ErrUntrustedBus (the hub stops, not retries)", err)
	}
	for _, want := range []string{"none verifies", signedWith.Signer.KeyID(), wrong.Signer.KeyID(), signing.TrustedKeysFile} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load: %q does not say %q", err, want)
		}
	}
}

// TestHistoryIDsNeverWrap: a key at MaxHistoryID (which only the hub's own
// key could have signed) refuses a new entry instead of wrapping to 0.
func TestHistoryIDsNeverWrap(t *testing.T) {
	if id, err := nextHistoryID("prod-eu.web", &flotillav1.DesiredState{HistoryId: MaxHistoryID - 1}); err != nil || id != MaxHistoryID {
		t.Errorf("nextHistoryID(MaxHistoryID-1) = %d, %v; want MaxHistoryID", id, err)
	}
	for _, id := range []uint64{MaxHistoryID, math.MaxUint64} {
		if _, err := nextHistoryID("prod-eu.web", &flotillav1.DesiredState{HistoryId: id}); !errors.Is(err, ErrHistoryExhausted) {
			t.Errorf("nextHistoryID(%d): %v, want ErrHistoryExhausted", id, err)
		}
	}

	store, keys := newMemStore(), signing.NewKeySet(newKey(t))
	p := New(store, keys, slog.Default())
	mustPublish(t, p, "1")
	last := proto.Clone(p.Latest("prod-eu", "web")).(*flotillav1.DesiredState)
	last.HistoryId = MaxHistoryID
	store.put("prod-eu", "web", mustSign(t, keys.Signer, last))
	p = restart(t, store, keys)
	before := len(store.entries)
	if _, err := p.Publish(t.Context(), discover(t, "2"), nil, nil); !errors.Is(err, ErrHistoryExhausted) {
		t.Errorf("Publish past MaxHistoryID: %v, want ErrHistoryExhausted", err)
	}
	if len(store.entries) != before {
		t.Error("a refused Publish wrote to the bus")
	}
}
