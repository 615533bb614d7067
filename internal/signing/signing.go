package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Algorithm is the only signature algorithm Flotilla writes and accepts.
const Algorithm = "ed25519"

// SchemaVersion is the version of the envelope and the messages it carries.
const SchemaVersion = 1

// Errors Verify returns.
var (
	// ErrBadSignature is a signature that does not verify.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrUnknownKey is a signature by a key the verifier does not pin.
	ErrUnknownKey = errors.New("signed by an unknown key")
)

// KeyID is the hex sha256 of a public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// Signer signs desired state with the hub's private key.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// NewSigner wraps a private key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, keyID: KeyID(key.Public().(ed25519.PublicKey))}
}

// PublicKey is the key agents pin.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign serializes ds and signs the bytes.
func (s *Signer) Sign(ds *flotillav1.DesiredState) (*flotillav1.SignedDesiredState, error) {
	payload, sig, err := s.sign(ds)
	if err != nil {
		return nil, fmt.Errorf("sign %s/%s: %w", ds.GetCluster(), ds.GetApp(), err)
	}
	return &flotillav1.SignedDesiredState{SchemaVersion: SchemaVersion, DesiredState: payload, Signature: sig}, nil
}

// SignCommand serializes an agent command and signs the bytes.
func (s *Signer) SignCommand(cmd *flotillav1.AgentCommand) (*flotillav1.SignedAgentCommand, error) {
	payload, sig, err := s.sign(cmd)
	if err != nil {
		return nil, fmt.Errorf("sign command for %s/%s: %w", cmd.GetCluster(), cmd.GetApp(), err)
	}
	return &flotillav1.SignedAgentCommand{SchemaVersion: SchemaVersion, Command: payload, Signature: sig}, nil
}

func (s *Signer) sign(m proto.Message) ([]byte, *flotillav1.Signature, error) {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	return payload, &flotillav1.Signature{Algorithm: Algorithm, KeyId: s.keyID, Value: ed25519.Sign(s.key, payload)}, nil
}

// Verifier checks signatures against pinned public keys.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier pins one or more public keys (several during a rotation).
func NewVerifier(keys ...ed25519.PublicKey) *Verifier {
	v := &Verifier{keys: map[string]ed25519.PublicKey{}}
	for _, k := range keys {
		v.keys[KeyID(k)] = k
	}
	return v
}

// Verify checks the envelope's signature and only then decodes the desired
// state. It returns ErrUnknownKey or ErrBadSignature when it must be refused.
func (v *Verifier) Verify(env *flotillav1.SignedDesiredState) (*flotillav1.DesiredState, error) {
	ds := &flotillav1.DesiredState{}
	if err := v.verify(env.GetSignature(), env.GetDesiredState(), ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// VerifyCommand checks an agent command's signature, then decodes it.
func (v *Verifier) VerifyCommand(env *flotillav1.SignedAgentCommand) (*flotillav1.AgentCommand, error) {
	cmd := &flotillav1.AgentCommand{}
	if err := v.verify(env.GetSignature(), env.GetCommand(), cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

func (v *Verifier) verify(sig *flotillav1.Signature, payload []byte, into proto.Message) error {
	if sig.GetAlgorithm() != Algorithm {
		return fmt.Errorf("%w: algorithm %q", ErrBadSignature, sig.GetAlgorithm())
	}
	key, ok := v.keys[sig.GetKeyId()]
	if !ok {
		return fmt.Errorf("%w: key %s", ErrUnknownKey, sig.GetKeyId())
	}
	if !ed25519.Verify(key, payload, sig.GetValue()) {
		return ErrBadSignature
	}
	if err := proto.Unmarshal(payload, into); err != nil {
		return fmt.Errorf("signed payload does not decode: %w", err)
	}
	return nil
}

// LoadOrCreateKey reads the hub's private key from dir/hub.key, creating it
// (and dir/hub.pub) on first start.
func LoadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	keyPath := filepath.Join(dir, "hub.key")
	data, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		pubPEM, err := EncodePublicKey(priv.Public().(ed25519.PublicKey))
		if err != nil {
			return nil, err
		}
		return priv, os.WriteFile(filepath.Join(dir, "hub.pub"), pubPEM, 0o644)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key", keyPath)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ed25519 key", keyPath)
	}
	return priv, nil
}

// EncodePublicKey returns a PEM "PUBLIC KEY" block.
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PEM "PUBLIC KEY" block holding an ed25519 key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM public key")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an ed25519 public key")
	}
	return pub, nil
}
