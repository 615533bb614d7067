package publish

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/flotilla-dev/flotilla/internal/signing"
)

// LoadKeys reads the hub's key set from dataDir (signing.LoadKeySet). It
// creates a signing key only when dataDir has none and the desired-state
// bucket is empty: with desired state in the bus, a new key would make
// every agent refuse what the hub publishes, and the hub could not verify
// its own history, so it refuses and says what to do instead.
func LoadKeys(ctx context.Context, store Store, dataDir string) (*signing.KeySet, error) {
	keys, err := signing.LoadKeySet(dataDir)
	switch {
	case err == nil:
		return keys, nil
	case !errors.Is(err, signing.ErrNoKey):
		return nil, fmt.Errorf("signing key: %w", err)
	}
	entries, err := store.LatestDesired(ctx)
	if err != nil {
		return nil, fmt.Errorf("signing key: read the desired-state bucket: %w", err)
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("signing key %s is missing but the bus holds %d desired states signed by %s: "+
			"restore the key from a backup, or see \"Losing the signing key\" in docs/operations.md",
			filepath.Join(dataDir, signing.KeyFile), len(entries), signedBy(entries))
	}
	if err := signing.CreateKey(dataDir); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if keys, err = signing.LoadKeySet(dataDir); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return keys, nil
}
