package signing

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Algorithm is the only signature algorithm Flotilla writes and accepts.
const Algorithm = "ed25519"

// SchemaVersion is the version of the envelope and the messages it carries.
const SchemaVersion = 1

// Domains of what the hub signs. A signature covers
// "flotilla/v<schema_version> <domain>\x00" followed by the payload, so a
// signed agent command never verifies as a desired state (their fields
// share numbers) nor the other way round, and an envelope whose
// schema_version was changed does not verify.
const (
	domainDesiredState = "desired-state"
	domainAgentCommand = "agent-command"
	domainFleetRollout = "fleet-rollout"
)

// signedMessage is what a signature covers: the domain, the envelope's
// schema version and the payload. The domain ends at the first NUL, so no
// payload of one domain reads as another's.
func signedMessage(domain string, schemaVersion uint32, payload []byte) []byte {
	msg := fmt.Appendf(nil, "flotilla/v%d %s\x00", schemaVersion, domain)
	return append(msg, payload...)
}

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

// KeyID is the id of the signer's key, as its signatures name it.
func (s *Signer) KeyID() string { return s.keyID }

// DeriveKey is a 32-byte secret for purpose, derived from the private key
// with HKDF-SHA256: every hub replica holding the key derives the same one,
// and it tells nothing of the key or of another purpose's secret.
func (s *Signer) DeriveKey(purpose string) []byte {
	key, err := hkdf.Key(sha256.New, s.key.Seed(), nil, "flotilla "+purpose, 32)
	if err != nil {
		panic(err) // only for a length HKDF-SHA256 cannot give; 32 it can
	}
	return key
}

// Sign serializes ds and signs the bytes in the desired-state domain.
func (s *Signer) Sign(ds *flotillav1.DesiredState) (*flotillav1.SignedDesiredState, error) {
	payload, sig, err := s.sign(domainDesiredState, ds)
	if err != nil {
		return nil, fmt.Errorf("sign %s/%s: %w", ds.GetCluster(), ds.GetApp(), err)
	}
	return &flotillav1.SignedDesiredState{SchemaVersion: SchemaVersion, DesiredState: payload, Signature: sig}, nil
}

// SignCommand serializes an agent command and signs the bytes in the
// agent-command domain.
func (s *Signer) SignCommand(cmd *flotillav1.AgentCommand) (*flotillav1.SignedAgentCommand, error) {
	payload, sig, err := s.sign(domainAgentCommand, cmd)
	if err != nil {
		return nil, fmt.Errorf("sign command for %s/%s: %w", cmd.GetCluster(), cmd.GetApp(), err)
	}
	return &flotillav1.SignedAgentCommand{SchemaVersion: SchemaVersion, Command: payload, Signature: sig}, nil
}

// SignFleetRollout serializes a fleet rollout's record and signs the
// bytes in the fleet-rollout domain.
func (s *Signer) SignFleetRollout(r *flotillav1.FleetRollout) (*flotillav1.SignedFleetRollout, error) {
	payload, sig, err := s.sign(domainFleetRollout, r)
	if err != nil {
		return nil, fmt.Errorf("sign fleet rollout %s: %w", r.GetId(), err)
	}
	return &flotillav1.SignedFleetRollout{SchemaVersion: SchemaVersion, Rollout: payload, Signature: sig}, nil
}

func (s *Signer) sign(domain string, m proto.Message) ([]byte, *flotillav1.Signature, error) {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	value := ed25519.Sign(s.key, signedMessage(domain, SchemaVersion, payload))
	return payload, &flotillav1.Signature{Algorithm: Algorithm, KeyId: s.keyID, Value: value}, nil
}

// Verifier checks signatures against pinned public keys.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier pins one or more public keys (a key set: several during a
// rotation).
func NewVerifier(keys ...ed25519.PublicKey) *Verifier {
	v := &Verifier{keys: map[string]ed25519.PublicKey{}}
	for _, k := range keys {
		v.keys[KeyID(k)] = k
	}
	return v
}

// Verify checks the envelope's signature, over its schema version and
// payload in the desired-state domain, and only then decodes the desired
// state. It returns ErrUnknownKey or ErrBadSignature when it must be
// refused; an agent command's envelope is ErrBadSignature here.
func (v *Verifier) Verify(env *flotillav1.SignedDesiredState) (*flotillav1.DesiredState, error) {
	ds := &flotillav1.DesiredState{}
	if err := v.verify(domainDesiredState, env.GetSchemaVersion(), env.GetSignature(), env.GetDesiredState(), ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// VerifyCommand checks an agent command's signature in the agent-command
// domain, then decodes it. It returns ErrUnknownKey or ErrBadSignature (a
// desired state's envelope is ErrBadSignature here).
func (v *Verifier) VerifyCommand(env *flotillav1.SignedAgentCommand) (*flotillav1.AgentCommand, error) {
	cmd := &flotillav1.AgentCommand{}
	if err := v.verify(domainAgentCommand, env.GetSchemaVersion(), env.GetSignature(), env.GetCommand(), cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// VerifyFleetRollout checks a fleet rollout record's signature in the
// fleet-rollout domain, then decodes it.
func (v *Verifier) VerifyFleetRollout(env *flotillav1.SignedFleetRollout) (*flotillav1.FleetRollout, error) {
	r := &flotillav1.FleetRollout{}
	if err := v.verify(domainFleetRollout, env.GetSchemaVersion(), env.GetSignature(), env.GetRollout(), r); err != nil {
		return nil, err
	}
	return r, nil
}

func (v *Verifier) verify(domain string, schemaVersion uint32, sig *flotillav1.Signature, payload []byte, into proto.Message) error {
	if sig.GetAlgorithm() != Algorithm {
		return fmt.Errorf("%w: algorithm %q", ErrBadSignature, sig.GetAlgorithm())
	}
	key, ok := v.keys[sig.GetKeyId()]
	if !ok {
		return fmt.Errorf("%w: key %s", ErrUnknownKey, sig.GetKeyId())
	}
	if !ed25519.Verify(key, signedMessage(domain, schemaVersion, payload), sig.GetValue()) {
		return ErrBadSignature
	}
	if err := proto.Unmarshal(payload, into); err != nil {
		return fmt.Errorf("signed payload does not decode: %w", err)
	}
	return nil
}
