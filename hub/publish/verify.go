package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// The hub trusts nothing it reads back from the bus: every desired state it
// loads (at start, for a rollback, for garbage collection) must verify with
// its key set and be signed for the key it is stored under. One that does
// not is logged and returned as an *UnverifiedError; it is never signed
// again and its history id never counts.

// MaxHistoryID is the largest history id the hub allocates. It refuses to
// publish a key past it (ErrHistoryExhausted) rather than wrap to 0, which
// agents would take for an old entry.
const MaxHistoryID = math.MaxUint64 - 1

var (
	// ErrMisfiled is a desired state signed for another (cluster, app)
	// than the key it is stored under.
	ErrMisfiled = errors.New("signed for another application")
	// ErrHistoryExhausted is a key whose history id reached MaxHistoryID.
	ErrHistoryExhausted = errors.New("history ids exhausted")
)

// UnverifiedError is a desired state in the bus the hub does not trust: its
// signature does not verify with the hub's key set (Err wraps
// signing.ErrBadSignature or signing.ErrUnknownKey), or it is ErrMisfiled.
type UnverifiedError struct {
	Cluster, App string
	// Revision is the entry's stream sequence.
	Revision uint64
	// HistoryID is the history id the entry claims (0 when it does not
	// decode). Nothing is decided on it but which entry an operator meant.
	HistoryID uint64
	Err       error
}

func (e *UnverifiedError) Error() string {
	return fmt.Sprintf("history entry %d of %s/%s does not verify: %v", e.HistoryID, e.Cluster, e.App, e.Err)
}

func (e *UnverifiedError) Unwrap() error { return e.Err }

// verify returns e's desired state if the hub's key set signed it for
// (e.Cluster, e.App), else an *UnverifiedError.
func (p *Publisher) verify(e bus.DesiredEntry) (*flotillav1.DesiredState, error) {
	ds, err := p.keys.Verifier.Verify(e.State)
	if err == nil && (ds.GetCluster() != e.Cluster || ds.GetApp() != e.App) {
		err = fmt.Errorf("%w: %s/%s", ErrMisfiled, ds.GetCluster(), ds.GetApp())
	}
	if err == nil {
		return ds, nil
	}
	claimed := &flotillav1.DesiredState{}
	_ = proto.Unmarshal(e.State.GetDesiredState(), claimed) // only to name the entry
	uerr := &UnverifiedError{Cluster: e.Cluster, App: e.App, Revision: e.Revision, HistoryID: claimed.GetHistoryId(), Err: err}
	p.log.Warn("desired state in the bus does not verify; ignored", "cluster", e.Cluster, "app", e.App,
		"revision", e.Revision, "history_id", uerr.HistoryID, "error", err)
	return nil, uerr
}

// Retained is one retained history entry of a key: its desired state when
// it verifies, else Err.
type Retained struct {
	// Revision is the entry's stream sequence.
	Revision uint64
	State    *flotillav1.DesiredState
	Err      *UnverifiedError
}

// History reads the retained history of (cluster, app), oldest first, each
// entry verified; bus.ErrNotFound (wrapped) when there is none.
func (p *Publisher) History(ctx context.Context, cluster, app string) ([]Retained, error) {
	entries, err := p.store.DesiredHistory(ctx, cluster, app)
	if err != nil {
		return nil, err
	}
	out := make([]Retained, len(entries))
	for i, e := range entries {
		out[i].Revision = e.Revision
		if ds, err := p.verify(e); err != nil {
			out[i].Err = err.(*UnverifiedError)
		} else {
			out[i].State = ds
		}
	}
	return out, nil
}

// newestVerified is the verified entry of (cluster, app) with the highest
// history id, nil when none verifies.
func (p *Publisher) newestVerified(ctx context.Context, cluster, app string) (*flotillav1.DesiredState, error) {
	history, err := p.History(ctx, cluster, app)
	if errors.Is(err, bus.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load published desired state: %w", err)
	}
	var newest *flotillav1.DesiredState
	for _, r := range history {
		if r.State != nil && r.State.GetHistoryId() >= newest.GetHistoryId() {
			newest = r.State
		}
	}
	return newest, nil
}

// nextHistoryID is the history id of the entry after prev (nil: the
// first) of key.
func nextHistoryID(key string, prev *flotillav1.DesiredState) (uint64, error) {
	id := prev.GetHistoryId()
	if id >= MaxHistoryID {
		return 0, fmt.Errorf("%s: history id %d: %w", key, id, ErrHistoryExhausted)
	}
	return id + 1, nil
}

// signedBy names the keys entries say they are signed by, for an error
// message: nothing is trusted on it, and an id that is not one is quoted.
func signedBy(entries []bus.DesiredEntry) string {
	ids := map[string]bool{}
	for _, e := range entries {
		id := e.State.GetSignature().GetKeyId()
		switch _, err := hex.DecodeString(id); {
		case id == "":
			id = "(unsigned)"
		case err != nil || len(id) != 2*sha256.Size:
			id = strconv.QuoteToASCII(id[:min(len(id), 2*sha256.Size)])
		}
		ids[id] = true
	}
	if len(ids) == 1 {
		return "key " + slices.Collect(maps.Keys(ids))[0]
	}
	return "keys " + strings.Join(slices.Sorted(maps.Keys(ids)), ", ")
}
