package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	if err := CreateKey(dir); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeySet(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadKeySet(dir)
	if err != nil || !keys.Signer.PublicKey().Equal(again.Signer.PublicKey()) {
		t.Fatalf("second start must load the same key: %v", err)
	}
	signer := keys.Signer
	ds := &flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 7,
		Artifact: &flotillav1.Artifact{Digest: "sha256:ab", Size: 10}}
	env, err := signer.Sign(ds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewVerifier(signer.PublicKey()).Verify(env)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(ds, got) {
		t.Fatalf("verified %v, signed %v", got, ds)
	}

	tampered := proto.Clone(env).(*flotillav1.SignedDesiredState)
	tampered.DesiredState[len(tampered.DesiredState)-1] ^= 1
	if _, err := NewVerifier(signer.PublicKey()).Verify(tampered); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered payload: %v, want ErrBadSignature", err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := NewVerifier(other).Verify(env); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unpinned key: %v, want ErrUnknownKey", err)
	}
}

// TestSignaturesAreDomainSeparated: agent commands and desired states
// share field numbers, so a command's payload decodes as a desired state.
// Its signature must still not verify as one, nor the other way round, nor
// an envelope whose schema_version was changed.
func TestSignaturesAreDomainSeparated(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer := NewSigner(key)
	verifier := NewVerifier(signer.PublicKey())
	cmd, err := signer.SignCommand(&flotillav1.AgentCommand{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", Actor: "otto",
		Command: &flotillav1.AgentCommand_Sync{Sync: &flotillav1.SyncCommand{}}})
	if err != nil {
		t.Fatal(err)
	}
	state, err := signer.Sign(&flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(cmd.GetCommand(), &flotillav1.DesiredState{}); err != nil {
		t.Fatalf("the command's payload no longer decodes as a desired state (%v): this test proves nothing", err)
	}

	for _, tc := range []struct {
		name   string
		verify func() error
	}{
		{"a command presented as a desired state", func() error {
			_, err := verifier.Verify(&flotillav1.SignedDesiredState{SchemaVersion: cmd.GetSchemaVersion(), DesiredState: cmd.GetCommand(), Signature: cmd.GetSignature()})
			return err
		}},
		{"a desired state presented as a command", func() error {
			_, err := verifier.VerifyCommand(&flotillav1.SignedAgentCommand{SchemaVersion: state.GetSchemaVersion(), Command: state.GetDesiredState(), Signature: state.GetSignature()})
			return err
		}},
		{"a desired state with another schema_version", func() error {
			changed := proto.Clone(state).(*flotillav1.SignedDesiredState)
			changed.SchemaVersion = 2
			_, err := verifier.Verify(changed)
			return err
		}},
		{"a command with another schema_version", func() error {
			changed := proto.Clone(cmd).(*flotillav1.SignedAgentCommand)
			changed.SchemaVersion = 0
			_, err := verifier.VerifyCommand(changed)
			return err
		}},
	} {
		if err := tc.verify(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", tc.name, err)
		}
	}
	if _, err := verifier.Verify(state); err != nil {
		t.Errorf("the desired state as signed: %v", err)
	}
	if _, err := verifier.VerifyCommand(cmd); err != nil {
		t.Errorf("the command as signed: %v", err)
	}
}

// TestDeriveKey: the same key and purpose give the same secret (every hub
// replica derives it alone); another purpose or another key, another one.
func TestDeriveKey(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	sessions := NewSigner(key).DeriveKey("dashboard sessions")
	if len(sessions) != 32 {
		t.Fatalf("derived %d bytes, want 32", len(sessions))
	}
	if again := NewSigner(slices.Clone(key)).DeriveKey("dashboard sessions"); !bytes.Equal(again, sessions) {
		t.Error("the same key and purpose derived another secret")
	}
	for name, derived := range map[string][]byte{
		"another purpose": NewSigner(key).DeriveKey("something else"),
		"another key":     NewSigner(other).DeriveKey("dashboard sessions"),
	} {
		if bytes.Equal(derived, sessions) {
			t.Errorf("%s derived the same secret", name)
		}
	}
}
