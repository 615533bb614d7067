package publish

import (
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/signing"
)

func TestLoadKeys(t *testing.T) {
	t.Run("first start: an empty bus and no key create one", func(t *testing.T) {
		dir, store := t.TempDir(), newMemStore()
		keys, err := LoadKeys(t.Context(), store, dir)
		if err != nil {
			t.Fatal(err)
		}
		again, err := LoadKeys(t.Context(), store, dir)
		if err != nil || again.Signer.KeyID() != keys.Signer.KeyID() {
			t.Fatalf("second start: key %s, %v; want the same key %s", again.Signer.KeyID(), err, keys.Signer.KeyID())
		}
	})

	t.Run("a missing key with desired state in the bus refuses to start", func(t *testing.T) {
		dir, store := t.TempDir(), newMemStore()
		lost := signing.NewKeySet(newKey(t))
		mustPublish(t, New(store, lost, slog.Default()), "1")

		_, err := LoadKeys(t.Context(), store, dir)
		want := "signing key " + filepath.Join(dir, signing.KeyFile) + " is missing but the bus holds 1 desired states signed by key " + lost.Signer.KeyID() + ": "
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "docs/operations.md") {
			t.Fatalf("LoadKeys: %v\nwant an error starting %q and pointing to docs/operations.md", err, want)
		}
		if _, err := os.Stat(filepath.Join(dir, signing.KeyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadKeys created a key beside a bus holding desired state: %v", err)
		}
	})

	t.Run("an existing key is loaded whatever the bus holds", func(t *testing.T) {
		dir, store := t.TempDir(), newMemStore()
		if err := signing.CreateKey(dir); err != nil {
			t.Fatal(err)
		}
		want, err := signing.LoadKeySet(dir)
		if err != nil {
			t.Fatal(err)
		}
		mustPublish(t, New(store, want, slog.Default()), "1")
		keys, err := LoadKeys(t.Context(), store, dir)
		if err != nil || keys.Signer.KeyID() != want.Signer.KeyID() {
			t.Fatalf("LoadKeys: key %v, %v; want %s", keys, err, want.Signer.KeyID())
		}
	})
}

// TestSigningKeyRotation follows "Rotating the signing key" in
// docs/operations.md step by step, with agents that trust first the old
// key, then both, then the new one: at no step does an agent refuse the
// desired state it runs, and the hub keeps verifying its own history.
func TestSigningKeyRotation(t *testing.T) {
	ctx := t.Context()
	store := newMemStore()
	oldPriv, newPriv := newKey(t), newKey(t)
	oldPub, newPub := oldPriv.Public().(ed25519.PublicKey), newPriv.Public().(ed25519.PublicKey)
	key := appkey.Join("prod-eu", "web")

	// agentAccepts: an agent trusting pins accepts the bus's newest entry.
	agentAccepts := func(t *testing.T, step string, pins ...ed25519.PublicKey) {
		t.Helper()
		if _, err := signing.NewVerifier(pins...).Verify(store.newest(t, "prod-eu", "web").State); err != nil {
			t.Errorf("%s: an agent refuses the newest desired state: %v", step, err)
		}
	}
	newestSigner := func(t *testing.T) string {
		t.Helper()
		return store.newest(t, "prod-eu", "web").State.GetSignature().GetKeyId()
	}

	// Before: the hub signs with the old key, agents pin it.
	p := New(store, signing.NewKeySet(oldPriv), slog.Default())
	mustPublish(t, p, "1")
	mustPublish(t, p, "2")
	agentAccepts(t, "before", oldPub)

	// Steps 1-2: the new key is made offline; the hub trusts and serves
	// both, and agents pin both. Nothing is signed again.
	p = restart(t, store, signing.NewKeySet(oldPriv, newPub))
	if r := mustPublish(t, p, "2"); len(r.Published) != 0 {
		t.Errorf("step 2 republished %v", r.Published)
	}
	served, err := signing.ParsePublicKeys(p.Keys().PEM())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ed25519.PublicKey{oldPub, newPub}, served); diff != "" {
		t.Errorf("step 2: /api/public-key serves (-want +got):\n%s", diff)
	}
	agentAccepts(t, "step 2", oldPub, newPub)

	// Step 3: the hub signs with the new key and still trusts the old
	// one. Its first pass signs every key's newest state again; entries
	// the old key signed stay valid for a rollback.
	p = restart(t, store, signing.NewKeySet(newPriv, oldPub))
	agentAccepts(t, "step 3, before the first pass", oldPub, newPub)
	r := mustPublish(t, p, "2")
	if diff := cmp.Diff([]string{key}, r.Resigned); diff != "" {
		t.Errorf("step 3: re-signed (-want +got):\n%s", diff)
	}
	if got := newestSigner(t); got != signing.KeyID(newPub) {
		t.Errorf("step 3: the newest entry is signed by %s, want the new key %s", got, signing.KeyID(newPub))
	}
	if ds := p.Latest("prod-eu", "web"); ds.GetHistoryId() != 3 || ds.GetSource().GetCommit() == "" {
		t.Errorf("step 3: re-signed as history %d (commit %q), want 3 with its source", ds.GetHistoryId(), ds.GetSource().GetCommit())
	}
	agentAccepts(t, "step 3", oldPub, newPub)
	agentAccepts(t, "step 3, an agent that pins only the new key", newPub)
	if _, err := p.Entry(ctx, "prod-eu", "web", 1); err != nil {
		t.Errorf("step 3: entry 1, signed by the old key: %v", err)
	}
	if r := mustPublish(t, p, "3"); len(r.Resigned) != 0 || newestSigner(t) != signing.KeyID(newPub) {
		t.Errorf("step 3: a Git change: %+v, signed by %s; want it signed by the new key, nothing re-signed", r, newestSigner(t))
	}

	// Step 4: the old key is dropped from the hub and from agents. What
	// agents run verifies; entries from before the switch are no longer
	// rolled back to.
	p = restart(t, store, signing.NewKeySet(newPriv))
	if r := mustPublish(t, p, "3"); len(r.Published) != 0 {
		t.Errorf("step 4 republished %v", r.Published)
	}
	agentAccepts(t, "step 4", newPub)
	if _, err := p.Entry(ctx, "prod-eu", "web", 1); !errors.Is(err, signing.ErrUnknownKey) || !errors.Is(err, ErrNotRollbackable) {
		t.Errorf("step 4: entry 1, signed by the dropped key: %v, want ErrUnknownKey", err)
	}
	if _, err := p.Entry(ctx, "prod-eu", "web", 3); err != nil {
		t.Errorf("step 4: entry 3, re-signed by the new key: %v", err)
	}
}
