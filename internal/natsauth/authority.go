package natsauth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Account is the name of the NATS account every Flotilla client is in.
const Account = "flotilla"

// Authority is the hub's operator: the keys that sign the accounts and the
// users, and the Flotilla account's revocation list.
type Authority struct {
	dir      string
	operator nkeys.KeyPair
	system   nkeys.KeyPair
	account  nkeys.KeyPair

	mu sync.Mutex
	// revoked maps a user's public key to when it was revoked; it is the
	// revocation list of the account JWT written to dir.
	revoked map[string]int64
	// server receives account updates once Attach is called.
	server *server.Server
}

// Key files under the authority's directory. Seeds are private to the hub
// (mode 0600); account.jwt is the signed account with its revocations, so
// a restart keeps every revocation before the server accepts a client.
const (
	OperatorSeedFile = "operator.nk"
	SystemSeedFile   = "system.nk"
	AccountSeedFile  = "account.nk"
	accountJWTFile   = "account.jwt"
)

// LoadOrCreate reads the authority's keys from dir, creating them on the
// first start.
func LoadOrCreate(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	a := &Authority{dir: dir, revoked: map[string]int64{}}
	var err error
	if a.operator, err = loadOrCreateSeed(filepath.Join(dir, OperatorSeedFile), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.system, err = loadOrCreateSeed(filepath.Join(dir, SystemSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.account, err = loadOrCreateSeed(filepath.Join(dir, AccountSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, accountJWTFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		claims, err := jwt.DecodeAccountClaims(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, accountJWTFile), err)
		}
		for pub, at := range claims.Revocations {
			a.revoked[pub] = at
		}
	}
	return a, nil
}

func loadOrCreateSeed(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := create()
		if err != nil {
			return nil, err
		}
		if seed, err = kp.Seed(); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(path, seed, 0o600); err != nil {
			return nil, err
		}
		return kp, nil
	}
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kp, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Configure puts the server into operator mode with this authority as its
// only trusted operator, and the system and Flotilla accounts preloaded in
// a memory resolver.
func (a *Authority) Configure(opts *server.Options) error {
	opPub, _ := a.operator.PublicKey()
	sysPub, _ := a.system.PublicKey()
	op := jwt.NewOperatorClaims(opPub)
	op.Name = "flotilla"
	op.SystemAccount = sysPub
	opJWT, err := op.Encode(a.operator)
	if err != nil {
		return err
	}
	if op, err = jwt.DecodeOperatorClaims(opJWT); err != nil {
		return err
	}
	sys := jwt.NewAccountClaims(sysPub)
	sys.Name = "SYS"
	sysJWT, err := sys.Encode(a.operator)
	if err != nil {
		return err
	}
	a.mu.Lock()
	accJWT, err := a.accountJWT()
	a.mu.Unlock()
	if err != nil {
		return err
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(sysPub, sysJWT); err != nil {
		return err
	}
	accPub, _ := a.account.PublicKey()
	if err := resolver.Store(accPub, accJWT); err != nil {
		return err
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{op}
	opts.SystemAccount = sysPub
	opts.AccountResolver = resolver
	return nil
}

// Attach sends the account's later updates (revocations) to srv, which
// Configure configured.
func (a *Authority) Attach(srv *server.Server) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.server = srv
}

// accountJWT signs the Flotilla account with JetStream enabled and the
// current revocations. a.mu must be held.
func (a *Authority) accountJWT() (string, error) {
	pub, _ := a.account.PublicKey()
	claims := jwt.NewAccountClaims(pub)
	claims.Name = Account
	claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit,
		MaxAckPending: jwt.NoLimit, MemoryMaxStreamBytes: jwt.NoLimit, DiskMaxStreamBytes: jwt.NoLimit}
	if len(a.revoked) > 0 {
		claims.Revocations = jwt.RevocationList{}
	}
	for pub, at := range a.revoked {
		claims.Revocations.Revoke(pub, time.Unix(at, 0))
	}
	return claims.Encode(a.operator)
}

// User signs a new user of the Flotilla account with perms, and returns
// its credentials file (JWT and seed, as nats.UserCredentials reads it)
// and its public key, which Revoke takes.
func (a *Authority) User(name string, perms jwt.Permissions) (creds []byte, publicKey string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", err
	}
	publicKey, _ = kp.PublicKey()
	claims := jwt.NewUserClaims(publicKey)
	claims.Name = name
	claims.Permissions = perms
	// Tokens are issued after the last revocation of the key could have
	// been; a revocation at the same second must still cut them off.
	claims.IssuedAt = time.Now().Unix()
	userJWT, err := claims.Encode(a.account)
	if err != nil {
		return nil, "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, "", err
	}
	creds, err = jwt.FormatUserConfig(userJWT, seed)
	return creds, publicKey, err
}

// Revoke adds a user's public key to the account's revocation list: the
// server closes its connections and refuses its credentials from now on.
// The list is written to disk before the server gets it.
func (a *Authority) Revoke(publicKey string) error {
	if !nkeys.IsValidPublicUserKey(publicKey) {
		return fmt.Errorf("revoke: %q is not a user public key", publicKey)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, done := a.revoked[publicKey]; done {
		return nil
	}
	a.revoked[publicKey] = time.Now().Unix()
	accJWT, err := a.accountJWT()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(a.dir, accountJWTFile), []byte(accJWT), 0o600); err != nil {
		return fmt.Errorf("revoke: write the account: %w", err)
	}
	return a.push(accJWT)
}

// push hands an account JWT to the attached server: its resolver keeps it
// for later connections, and UpdateAccountClaims applies it to the
// connections open now (closing revoked users'). a.mu must be held.
func (a *Authority) push(accJWT string) error {
	if a.server == nil {
		return nil
	}
	claims, err := jwt.DecodeAccountClaims(accJWT)
	if err != nil {
		return err
	}
	if err := a.server.AccountResolver().Store(claims.Subject, accJWT); err != nil {
		return err
	}
	acc, err := a.server.LookupAccount(claims.Subject)
	if err != nil {
		return err
	}
	a.server.UpdateAccountClaims(acc, claims)
	return nil
}

// Revoked reports whether a user's public key is revoked.
func (a *Authority) Revoked(publicKey string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.revoked[publicKey]
	return ok
}

// Credentials is the nats.Option that connects as the user of creds (a
// credentials file's content, as User returns it).
func Credentials(creds []byte) (nats.Option, error) {
	userJWT, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	return nats.UserJWTAndSeed(userJWT, string(seed)), nil
}

// ClusterOptions are the nats.Options of cluster's agent: its credentials,
// and the inbox prefix its permissions allow replies on.
func ClusterOptions(cluster string, creds []byte) ([]nats.Option, error) {
	user, err := Credentials(creds)
	if err != nil {
		return nil, err
	}
	return []nats.Option{user, nats.CustomInboxPrefix(InboxPrefix(cluster))}, nil
}
