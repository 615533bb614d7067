package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	priv, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateKey(dir)
	if err != nil || !priv.Equal(again) {
		t.Fatalf("second start must load the same key: %v", err)
	}
	signer := NewSigner(priv)
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
