package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The hub's key files in its data directory (docs/operations.md, "Rotating
// the signing key").
const (
	// KeyFile is the hub's private signing key, PKCS #8 PEM, as
	// `openssl genpkey -algorithm ed25519` writes it.
	KeyFile = "hub.key"
	// PublicKeyFile is the public key of KeyFile. The hub writes it with a
	// new key and refuses to start when it holds another key.
	PublicKeyFile = "hub.pub"
	// TrustedKeysFile holds further public keys the hub trusts and serves
	// to agents beside its own: the next key before a rotation, the
	// previous one after it. It is optional, and may hold no key (only
	// comments, or nothing) once a rotation is over.
	TrustedKeysFile = "trusted-keys.pem"
)

// ErrNoKey is a data directory without a signing key (LoadKeySet).
var ErrNoKey = errors.New("no signing key")

// KeySet is the hub's signing key and every public key it trusts: its own
// first, then those of TrustedKeysFile. The hub verifies what it reads back
// from the bus with Verifier, so entries signed by a previous key stay
// valid while that key is trusted.
type KeySet struct {
	Signer   *Signer
	Verifier *Verifier
	trusted  []ed25519.PublicKey
}

// NewKeySet is the key set of key and trusted (duplicates dropped).
func NewKeySet(key ed25519.PrivateKey, trusted ...ed25519.PublicKey) *KeySet {
	s := &KeySet{Signer: NewSigner(key)}
	seen := map[string]bool{}
	for _, pub := range append([]ed25519.PublicKey{s.Signer.PublicKey()}, trusted...) {
		if id := KeyID(pub); !seen[id] {
			seen[id] = true
			s.trusted = append(s.trusted, pub)
		}
	}
	s.Verifier = NewVerifier(s.trusted...)
	return s
}

// KeyIDs are the ids of the trusted keys, the signer's first.
func (s *KeySet) KeyIDs() []string {
	ids := make([]string, len(s.trusted))
	for i, pub := range s.trusted {
		ids[i] = KeyID(pub)
	}
	return ids
}

// PEM is every trusted key as a key set file (ParsePublicKeys), the
// signer's first: what agents pin with --hub-public-key.
func (s *KeySet) PEM() []byte {
	var out []byte
	for _, pub := range s.trusted {
		block, _ := EncodePublicKey(pub) // an ed25519 key always encodes
		out = append(out, block...)
	}
	return out
}

// LoadKeySet reads the hub's key set from dir: the signing key KeyFile,
// checked against PublicKeyFile when that exists, and the keys of
// TrustedKeysFile when that exists. A missing KeyFile is ErrNoKey: whether
// to create one (CreateKey) is the caller's decision.
func LoadKeySet(dir string) (*KeySet, error) {
	keyPath := filepath.Join(dir, KeyFile)
	key, err := loadPrivateKey(keyPath)
	if err != nil {
		return nil, err
	}
	pubPath := filepath.Join(dir, PublicKeyFile)
	switch data, err := os.ReadFile(pubPath); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		pub, err := ParsePublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pubPath, err)
		}
		if want := key.Public().(ed25519.PublicKey); !pub.Equal(want) {
			return nil, fmt.Errorf("%s holds key %s, not the public key of %s (key %s): replace it with `openssl pkey -in %s -pubout -out %s`",
				pubPath, KeyID(pub), keyPath, KeyID(want), keyPath, pubPath)
		}
	}
	var trusted []ed25519.PublicKey
	trustedPath := filepath.Join(dir, TrustedKeysFile)
	switch data, err := os.ReadFile(trustedPath); {
	case errors.Is(err, os.ErrNotExist), err == nil && !bytes.Contains(data, []byte("-----BEGIN")):
	case err != nil:
		return nil, err
	default:
		if trusted, err = ParsePublicKeys(data); err != nil {
			return nil, fmt.Errorf("%s: %w", trustedPath, err)
		}
	}
	return NewKeySet(key, trusted...), nil
}

// loadPrivateKey reads an ed25519 PKCS #8 PEM private key; ErrNoKey when
// the file does not exist. No error quotes the file's content.
func loadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNoKey)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ed25519 key", path)
	}
	return priv, nil
}

// CreateKey generates a signing key into dir: KeyFile (mode 0600) and
// PublicKeyFile. It never replaces either (os.ErrExist): the bus may hold
// desired state signed by that key, which agents would then refuse, and a
// PublicKeyFile left by a lost key may be the only copy of it.
func CreateKey(dir string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPath, pubPath := filepath.Join(dir, KeyFile), filepath.Join(dir, PublicKeyFile)
	if _, err := os.Lstat(pubPath); err == nil {
		return fmt.Errorf("create signing key: %s exists without %s: %w", pubPath, KeyFile, os.ErrExist)
	}
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	pubPEM, err := EncodePublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	return os.WriteFile(pubPath, pubPEM, 0o644)
}

// EncodePublicKey returns a PEM "PUBLIC KEY" block.
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PEM "PUBLIC KEY" block holding an ed25519 key:
// the first key of a key set (ParsePublicKeys).
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return nil, err
	}
	return keys[0], nil
}

// ParsePublicKeys reads a key set: every PEM block of data, each a "PUBLIC
// KEY" holding an ed25519 key, in order. Text between blocks is ignored
// (comments); a block that does not decode, of another type or holding
// another kind of key is an error naming the block and its line, and so
// is data without any block.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	begin := []byte("-----BEGIN")
	var keys []ed25519.PublicKey
	rest := data
	for n := 1; ; n++ {
		i := bytes.Index(rest, begin)
		if i < 0 {
			break
		}
		at := rest[i:]
		line := bytes.Count(data[:len(data)-len(at)], []byte("\n")) + 1
		block, after := pem.Decode(at)
		// pem.Decode skips a malformed block and decodes the next one:
		// then what it consumed reaches past the next BEGIN line.
		next := bytes.Index(at[1:], begin)
		if block == nil || (next >= 0 && next+1 < len(at)-len(after)) {
			return nil, fmt.Errorf("PEM block %d (line %d) does not decode", n, line)
		}
		pub, err := parsePublicKeyBlock(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (line %d): %w", n, line, err)
		}
		keys = append(keys, pub)
		rest = after
	}
	if len(keys) == 0 {
		return nil, errors.New("not a PEM public key: no PEM block")
	}
	return keys, nil
}

func parsePublicKeyBlock(block *pem.Block) (ed25519.PublicKey, error) {
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("a %q block, not a PUBLIC KEY", block.Type)
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
