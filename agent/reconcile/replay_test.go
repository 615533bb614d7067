package reconcile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/agent/inventory"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestReplayAfterRestart puts old, validly signed entries of an
// application in front of a restarted agent, as catch-up delivers what the
// bucket holds: the history id the inventory records refuses them, with
// nothing changed, while a rollback (a new, higher entry) applies.
func TestReplayAfterRestart(t *testing.T) {
	e := startSyncer(t)
	const app = "replay"
	e.cluster.CreateNamespace(t, app)
	policy := &flotillav1.SyncPolicy{Automated: &flotillav1.Automated{Prune: true}}
	settings := func(version string) map[string]string {
		return map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {version: \"" + version + "\"}\n"}
	}
	// offerAt and removeAt hand the syncer app's entry with history id id.
	offerAt := func(id uint64, files map[string]string) {
		e.history[app] = id - 1
		e.offer(t, app, app, files, policy)
	}
	removeAt := func(id uint64) {
		e.history[app] = id - 1
		e.offerRemoval(t, app)
	}
	// live is the live ConfigMap's version and resource version ("" when
	// it is gone).
	live := func() (version, resourceVersion string) {
		cm := e.configMap(t, app, "settings")
		if cm == nil {
			return "", ""
		}
		return testenv.Field(cm, "data", "version"), cm.GetResourceVersion()
	}
	recorded := func() *inventory.Inventory {
		inv, err := e.inventory.Load(t.Context(), app)
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	// refused waits for the refusal's warning; the status stays the one of
	// what the cluster holds.
	refused := func(t *testing.T, id uint64, want string) {
		t.Helper()
		before := e.reporter.status(app)
		var ev *flotillav1.Event
		testenv.Eventually(t, time.Minute, func() error {
			if ev = e.eventOf(app, flotillav1.ReasonReplayed, id); ev == nil {
				return fmt.Errorf("no %s event for history %d", flotillav1.ReasonReplayed, id)
			}
			return nil
		})
		if ev.GetType() != flotillav1.EventType_EVENT_TYPE_WARNING || ev.GetMessage() != "desired state refused: "+want {
			t.Errorf("history %d: event %v, want a warning: refused: %q", id, ev, want)
		}
		if st := e.reporter.status(app); st.GetHistoryId() != before.GetHistoryId() || st.GetMessage() != before.GetMessage() {
			t.Errorf("status changed to history %d (%s), want %d kept", st.GetHistoryId(), st.GetMessage(), before.GetHistoryId())
		}
	}

	offerAt(3, settings("3"))
	succeeded(t, e.waitStatus(t, app, 3))
	offerAt(5, settings("5"))
	succeeded(t, e.waitStatus(t, app, 5))
	_, rv := live()
	if inv := recorded(); inv.HistoryID != 5 || inv.Deleted {
		t.Fatalf("inventory records history %d (deleted %t), want 5", inv.HistoryID, inv.Deleted)
	}

	t.Run("an older entry after a restart is refused, and changes nothing", func(t *testing.T) {
		e.restart()
		applied := recorded().Applied
		offerAt(3, settings("3"))
		refused(t, 3, "history 3 is older than the applied 5")
		if version, now := live(); version != "5" || now != rv {
			t.Errorf("ConfigMap at version %q (resource version %s, was %s), want 5 untouched", version, now, rv)
		}
		if inv := recorded(); inv.HistoryID != 5 || inv.Applied != applied {
			t.Errorf("inventory records history %d applied %q, want 5 and %q", inv.HistoryID, inv.Applied, applied)
		}
	})

	t.Run("the applied entry again is a no-op", func(t *testing.T) {
		offerAt(5, settings("5"))
		testenv.Eventually(t, time.Minute, func() error {
			if st := e.reporter.status(app); st.GetHistoryId() != 5 || st.GetMessage() != noopMessage {
				return fmt.Errorf("history %d: %q, want 5: %q", st.GetHistoryId(), st.GetMessage(), noopMessage)
			}
			return nil
		})
		if _, now := live(); now != rv {
			t.Errorf("ConfigMap written again (resource version %s, was %s)", now, rv)
		}
	})

	t.Run("an older deletion after a restart is refused", func(t *testing.T) {
		e.restart()
		removeAt(2)
		refused(t, 2, "history 2 is older than the applied 5")
		if version, now := live(); version != "5" || now != rv {
			t.Errorf("ConfigMap at version %q (resource version %s, was %s), want 5 untouched", version, now, rv)
		}
	})

	t.Run("a deleted application is not brought back by its older entry", func(t *testing.T) {
		removeAt(6)
		if st := succeeded(t, e.waitStatus(t, app, 6)); !strings.Contains(st.GetMessage(), "1 objects deleted") {
			t.Fatalf("deletion: %s", st.GetMessage())
		}
		if inv := recorded(); !inv.Deleted || inv.HistoryID != 6 || len(inv.Objects) > 0 {
			t.Errorf("tombstone: %+v, want deleted at history 6, owning nothing", inv)
		}
		e.restart()
		offerAt(5, settings("5"))
		refused(t, 5, "history 5 is not newer than the deletion at history 6")
		if version, _ := live(); version != "" {
			t.Errorf("ConfigMap created again at version %q", version)
		}
	})

	t.Run("the deletion again is ignored without a word", func(t *testing.T) {
		e.restart()
		before := e.reporter.status(app)
		removeAt(6)
		// SyncNow is answered after the worker took the deletion.
		if id, err := e.syncer.SyncNow(t.Context(), app); id != 6 || err != nil {
			t.Fatalf("sync now: history %d, %v; want 6", id, err)
		}
		if st := e.reporter.status(app); st != before {
			t.Errorf("status of history %d (%s) reported again, want none", st.GetHistoryId(), st.GetMessage())
		}
	})

	t.Run("a rollback is a new entry, and applies", func(t *testing.T) {
		offerAt(7, settings("5"))
		succeeded(t, e.waitStatus(t, app, 7))
		if version, _ := live(); version != "5" {
			t.Errorf("ConfigMap at version %q, want 5", version)
		}
		if inv := recorded(); inv.Deleted || inv.HistoryID != 7 || len(inv.Objects) != 1 {
			t.Errorf("inventory: %+v, want history 7 owning the ConfigMap", inv)
		}
	})

	t.Run("an entry that failed still counts", func(t *testing.T) {
		offerAt(8, map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_A_Name}\n"})
		if st := e.waitStatus(t, app, 8); st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED {
			t.Fatalf("history 8: %s: %s, want it failed", st.GetPhase(), st.GetMessage())
		}
		e.restart()
		offerAt(7, settings("5"))
		refused(t, 7, "history 7 is older than the accepted 8")
	})
}

// eventOf is the event of app's history id with reason, nil when there is
// none.
func (e *syncerEnv) eventOf(app, reason string, historyID uint64) *flotillav1.Event {
	e.reporter.mu.Lock()
	defer e.reporter.mu.Unlock()
	for _, ev := range e.reporter.events {
		if ev.GetApp() == app && ev.GetReason() == reason && ev.GetHistoryId() == historyID {
			return ev
		}
	}
	return nil
}
