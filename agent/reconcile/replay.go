package reconcile

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/agent/inventory"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// replayedError refuses a desired state whose history id is lower than the
// one the cluster recorded for its application (or not higher than the
// application's deletion): an old entry put back, or an old deletion. It
// is not retried.
type replayedError struct {
	historyID uint64
	// recorded is the history id in the inventory; deleted that it is the
	// application's deletion, applied that it was applied in full.
	recorded         uint64
	deleted, applied bool
}

func (e *replayedError) Error() string {
	switch {
	case e.deleted:
		return fmt.Sprintf("history %d is not newer than the deletion at history %d", e.historyID, e.recorded)
	case e.applied:
		return fmt.Sprintf("history %d is older than the applied %d", e.historyID, e.recorded)
	}
	return fmt.Sprintf("history %d is older than the accepted %d", e.historyID, e.recorded)
}

// Recorded is the highest history id of app this agent took: offered
// since it started, or recorded in the application's inventory in the
// cluster (what it accepted before a restart). It is 0 for none, and
// leaves the inventory out when it cannot be read: the sync refuses a
// replay itself.
func (s *Syncer) Recorded(ctx context.Context, app string) uint64 {
	var seen uint64
	if w := s.worker(app); w != nil {
		w.mu.Lock()
		seen = w.seen
		w.mu.Unlock()
	}
	inv, err := s.deps.Inventories.Load(ctx, app)
	if err != nil {
		return seen
	}
	return max(seen, recordedHistoryID(inv))
}

// checkHistory compares spec's history id with the one inv records, which
// outlives the agent: a lower one is a replay (a *replayedError), and so is
// any entry not newer than the deletion of the application (the same
// deletion again is a duplicate: nothing to do). The same id otherwise goes
// on: a no-op when it was applied in full, or the sync tried again.
func checkHistory(spec syncSpec, inv *inventory.Inventory) (duplicate bool, err error) {
	recorded := recordedHistoryID(inv)
	switch {
	case inv.Deleted && spec.historyID == recorded && spec.deletion != nil:
		return true, nil
	case inv.Deleted && spec.historyID <= recorded:
		return false, &replayedError{historyID: spec.historyID, recorded: recorded, deleted: true}
	case spec.historyID < recorded:
		return false, &replayedError{historyID: spec.historyID, recorded: recorded, applied: appliedHistoryID(inv.Applied) == recorded}
	}
	return false, nil
}

// recordedHistoryID is the highest history id inv records: the one it was
// accepted at or, for an inventory written before it recorded that, the
// one applied.
func recordedHistoryID(inv *inventory.Inventory) uint64 {
	return max(inv.HistoryID, appliedHistoryID(inv.Applied))
}

// appliedHistoryID is the history id of an appliedID, 0 for none.
func appliedHistoryID(applied string) uint64 {
	id, _, _ := strings.Cut(applied, "/")
	n, _ := strconv.ParseUint(id, 10, 64)
	return n
}

// accept records spec's history id in inv before anything of it is
// written, when it is newer than the one recorded: from then on an older
// entry is refused, after a restart too.
func (s *Syncer) accept(ctx context.Context, spec syncSpec, inv *inventory.Inventory) error {
	if !inv.Deleted && inv.HistoryID >= spec.historyID {
		return nil
	}
	inv.HistoryID, inv.Deleted = spec.historyID, false
	if err := s.deps.Inventories.Save(ctx, inv); err != nil {
		return fmt.Errorf("nothing of history %d was applied: %w", spec.historyID, err)
	}
	return nil
}

// refuseReplayed reports a replayed desired state with a warning event;
// nothing was done, and the status stays what the cluster holds (the
// newer entry's).
func (s *Syncer) refuseReplayed(ctx context.Context, spec syncSpec, traceID string, err *replayedError) {
	s.deps.Reporter.Event(ctx, &flotillav1.Event{
		SchemaVersion: 1, Time: timestamppb.Now(), Cluster: spec.cluster, App: spec.app, Type: flotillav1.EventType_EVENT_TYPE_WARNING,
		Reason: flotillav1.ReasonReplayed, Message: "desired state refused: " + err.Error(), Revision: spec.revision, HistoryId: spec.historyID,
		TraceId: traceID, Source: "agent", Actor: "agent/" + spec.cluster,
	})
}
