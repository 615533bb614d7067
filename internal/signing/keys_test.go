package signing

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func newPublicKey(t *testing.T) (ed25519.PublicKey, []byte) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := EncodePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pub, block
}

func TestParsePublicKeys(t *testing.T) {
	first, firstPEM := newPublicKey(t)
	second, secondPEM := newPublicKey(t)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	corrupt := strings.Replace(string(secondPEM), "\n", "\n!!!!", 2) // base64 that does not decode
	join := func(parts ...[]byte) []byte { return slices.Concat(parts...) }

	for _, tc := range []struct {
		name    string
		data    []byte
		want    []ed25519.PublicKey
		wantErr string
	}{
		{name: "one key, as hub.pub", data: firstPEM, want: []ed25519.PublicKey{first}},
		{name: "a key set, in order", data: join(secondPEM, firstPEM), want: []ed25519.PublicKey{second, first}},
		{name: "comments between keys are ignored", data: join([]byte("# old key, retire after 2026-06\n"), firstPEM, []byte("\n# new key\n"), secondPEM),
			want: []ed25519.PublicKey{first, second}},
		{name: "an empty file", data: nil, wantErr: "no PEM block"},
		{name: "text without a key", data: []byte("ssh-ed25519 AAAA me@host\n"), wantErr: "no PEM block"},
		{name: "a key that is not ed25519", data: join(firstPEM, ecPEM), wantErr: "PEM block 2 (line 4): not an ed25519 public key"},
		{name: "a private key in a key set", data: join(firstPEM, privPEM), wantErr: `PEM block 2 (line 4): a "PRIVATE KEY" block, not a PUBLIC KEY`},
		{name: "a block that does not decode, between good ones", data: join(firstPEM, []byte(corrupt), firstPEM), wantErr: "PEM block 2 (line 4) does not decode"},
		{name: "a block that does not decode, last", data: join(firstPEM, []byte(corrupt)), wantErr: "PEM block 2 (line 4) does not decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePublicKeys(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "MC4CAQAw") || strings.Contains(err.Error(), "MCowBQYDK2Vw") {
					t.Errorf("the error quotes key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadKeySet(t *testing.T) {
	t.Run("a missing key is ErrNoKey, and nothing is created", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadKeySet(dir); !errors.Is(err, ErrNoKey) {
			t.Fatalf("LoadKeySet: %v, want ErrNoKey", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("LoadKeySet wrote %v", entries)
		}
	})

	t.Run("CreateKey never replaces a key", func(t *testing.T) {
		dir := t.TempDir()
		if err := CreateKey(dir); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(filepath.Join(dir, KeyFile))
		if err := CreateKey(dir); !errors.Is(err, os.ErrExist) {
			t.Errorf("second CreateKey: %v, want os.ErrExist", err)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, KeyFile)); string(after) != string(before) {
			t.Error("second CreateKey replaced the key")
		}
		if info, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", KeyFile, err, info.Mode().Perm())
		}

		// hub.pub without hub.key: the public key of a lost key, kept.
		lost := t.TempDir()
		_, lostPEM := newPublicKey(t)
		if err := os.WriteFile(filepath.Join(lost, PublicKeyFile), lostPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := CreateKey(lost); !errors.Is(err, os.ErrExist) {
			t.Errorf("CreateKey beside a hub.pub: %v, want os.ErrExist", err)
		}
		if _, err := os.Stat(filepath.Join(lost, KeyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("CreateKey beside a hub.pub wrote %s: %v", KeyFile, err)
		}
	})

	t.Run("the signer first, then the trusted keys, each once", func(t *testing.T) {
		dir := t.TempDir()
		if err := CreateKey(dir); err != nil {
			t.Fatal(err)
		}
		previous, previousPEM := newPublicKey(t)
		own, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile))
		if err := os.WriteFile(filepath.Join(dir, TrustedKeysFile), slices.Concat([]byte("# before 2026-03\n"), previousPEM, own), 0o644); err != nil {
			t.Fatal(err)
		}
		keys, err := LoadKeySet(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{keys.Signer.KeyID(), KeyID(previous)}
		if diff := cmp.Diff(want, keys.KeyIDs()); diff != "" {
			t.Errorf("key ids (-want +got):\n%s", diff)
		}
		served, err := ParsePublicKeys(keys.PEM())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]ed25519.PublicKey{keys.Signer.PublicKey(), previous}, served); diff != "" {
			t.Errorf("served key set (-want +got):\n%s", diff)
		}
		if first, err := ParsePublicKey(keys.PEM()); err != nil || !first.Equal(keys.Signer.PublicKey()) {
			t.Errorf("ParsePublicKey of the served set: %v, want the signer's key first", err)
		}
	})

	t.Run("a hub.pub of another key is refused", func(t *testing.T) {
		dir := t.TempDir()
		if err := CreateKey(dir); err != nil {
			t.Fatal(err)
		}
		_, otherPEM := newPublicKey(t)
		if err := os.WriteFile(filepath.Join(dir, PublicKeyFile), otherPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeySet(dir); err == nil || !strings.Contains(err.Error(), "not the public key of") {
			t.Errorf("LoadKeySet: %v, want a refusal naming the mismatch", err)
		}
	})

	t.Run("a bad trusted-keys.pem is refused, naming the file", func(t *testing.T) {
		dir := t.TempDir()
		if err := CreateKey(dir); err != nil {
			t.Fatal(err)
		}
		_, keyPEM := newPublicKey(t)
		bad := strings.Replace(string(keyPEM), "PUBLIC KEY", "CERTIFICATE", 2)
		if err := os.WriteFile(filepath.Join(dir, TrustedKeysFile), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeySet(dir); err == nil || !strings.Contains(err.Error(), TrustedKeysFile) {
			t.Errorf("LoadKeySet: %v, want a refusal naming %s", err, TrustedKeysFile)
		}
	})

	t.Run("a trusted-keys.pem without keys, after a rotation, adds none", func(t *testing.T) {
		dir := t.TempDir()
		if err := CreateKey(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, TrustedKeysFile), []byte("# the key of 2025 was retired on 2026-03-14\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		keys, err := LoadKeySet(dir)
		if err != nil || len(keys.KeyIDs()) != 1 {
			t.Errorf("LoadKeySet: %v, %v; want the signer's key alone", keys, err)
		}
	})
}

// TestOpenSSLKeys: the key files docs/operations.md makes with openssl load,
// and what the key signs verifies with the public key openssl derived.
func TestOpenSSLKeys(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "ed25519", "-out", filepath.Join(dir, KeyFile)},
		{"pkey", "-in", filepath.Join(dir, KeyFile), "-pubout", "-out", filepath.Join(dir, PublicKeyFile)},
	} {
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	keys, err := LoadKeySet(dir)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	pub, err := ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	env, err := keys.Signer.Sign(&flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(pub).Verify(env); err != nil {
		t.Errorf("openssl's public key does not verify the key's signature: %v", err)
	}
}
