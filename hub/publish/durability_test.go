package publish

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/flotilla-dev/flotilla/internal/signing"
)

// TestAPartlyAcknowledgedPublishSpendsItsHistoryIDs: JetStream takes one
// of two desired states and fails the other. The one it took is published
// (its id spent), the other is pending; the next Publish writes only the
// pending one, and no id is ever used twice for different content.
func TestAPartlyAcknowledgedPublishSpendsItsHistoryIDs(t *testing.T) {
	store := newMemStore()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	keys := signing.NewKeySet(key)
	p := restart(t, store, keys)
	if _, err := p.Publish(t.Context(), discoverFor(t, "1", "prod-eu", "staging-1"), nil, nil); err != nil {
		t.Fatal(err)
	}

	store.accept = 1
	report, err := p.Publish(t.Context(), discoverFor(t, "2", "prod-eu", "staging-1"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 desired states not published") || report.Pending != 1 || len(report.Published) != 1 {
		t.Fatalf("partly acknowledged: report %+v, error %v", report, err)
	}
	took := report.Published[0]

	store.accept = -1
	report, err = p.Publish(t.Context(), discoverFor(t, "2", "prod-eu", "staging-1"), nil, nil)
	if err != nil || report.Pending != 0 || len(report.Published) != 1 || report.Published[0] == took || report.Unchanged != 1 {
		t.Fatalf("the retry: report %+v, error %v; want only the pending key published", report, err)
	}
	// Every key's entries have strictly increasing ids, each id once.
	for _, cluster := range []string{"prod-eu", "staging-1"} {
		history, err := store.DesiredHistory(t.Context(), cluster, "web")
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, e := range history {
			ds, err := p.verify(e)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ds.GetHistoryId())
		}
		if len(ids) != 2 || ids[0] != 1 || ids[1] != 2 {
			t.Errorf("%s: history ids %v, want [1 2]", cluster, ids)
		}
	}
	// A hub that restarts now goes on from there, publishing nothing.
	report, err = restart(t, store, keys).Publish(t.Context(), discoverFor(t, "2", "prod-eu", "staging-1"), nil, nil)
	if err != nil || len(report.Published) != 0 {
		t.Fatalf("after a restart: report %+v, error %v", report, err)
	}
}

// TestACorruptOrMissingArtifactIsStoredAgain: an artifact whose stored
// bytes no longer hash to its digest, or that is gone, is stored again
// from Git by the next process to publish it.
func TestACorruptOrMissingArtifactIsStoredAgain(t *testing.T) {
	store := newMemStore()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	keys := signing.NewKeySet(key)
	if _, err := restart(t, store, keys).Publish(t.Context(), discover(t, "1"), nil, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := restart(t, store, keys).verify(store.newest(t, "prod-eu", "web"))
	if err != nil {
		t.Fatal(err)
	}
	name := ds.GetArtifact().GetDigest()
	for _, damage := range []struct {
		what string
		do   func()
	}{
		{"corrupt", func() { store.artifacts[name] = append([]byte("x"), store.artifacts[name]...) }},
		{"missing", func() { delete(store.artifacts, name) }},
	} {
		damage.do()
		report, err := restart(t, store, keys).Publish(t.Context(), discover(t, "1"), nil, nil)
		if err != nil || report.ArtifactsStored != 1 || len(report.Published) != 0 {
			t.Fatalf("%s artifact: report %+v, error %v; want it stored again and nothing republished", damage.what, report, err)
		}
		if ok, _ := store.ArtifactIntact(t.Context(), name); !ok {
			t.Errorf("%s artifact: still not intact", damage.what)
		}
	}
}

// TestObservedEntriesKeepTheHistoryGoing: a follower that observes another
// replica's entries continues from the highest history id when it leads,
// and an older entry put back on top (a replay) does not take it back: the
// next Publish signs the latest again with a new id, which agents accept.
func TestObservedEntriesKeepTheHistoryGoing(t *testing.T) {
	store := newMemStore()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	keys := signing.NewKeySet(key)
	leader := restart(t, store, keys)
	follower := restart(t, store, keys)
	for _, value := range []string{"1", "2"} {
		if _, err := leader.Publish(t.Context(), discover(t, value), nil, nil); err != nil {
			t.Fatal(err)
		}
		follower.Observe(store.newest(t, "prod-eu", "web"))
	}
	if got := follower.Latest("prod-eu", "web").GetHistoryId(); got != 2 {
		t.Fatalf("the follower's latest is history %d, want 2", got)
	}

	history, err := store.DesiredHistory(t.Context(), "prod-eu", "web")
	if err != nil {
		t.Fatal(err)
	}
	store.put("prod-eu", "web", history[0].State) // history 1, put back on top
	follower.Observe(store.newest(t, "prod-eu", "web"))
	if got := follower.Latest("prod-eu", "web").GetHistoryId(); got != 2 {
		t.Fatalf("after a replay the follower's latest is history %d, want still 2", got)
	}
	report, err := follower.Publish(t.Context(), discover(t, "2"), nil, nil)
	if err != nil || len(report.Resigned) != 1 {
		t.Fatalf("publish over the replay: report %+v, error %v; want the latest signed again", report, err)
	}
	if got := follower.Latest("prod-eu", "web").GetHistoryId(); got != 3 {
		t.Errorf("the replay was superseded by history %d, want 3", got)
	}
}

// TestAReplayOnTopIsFoundByTheHistoryScan: a hub that starts with an older
// entry put back on top of a key takes it for the newest (Load reads only
// the newest); the scan garbage collection makes finds the later entry
// beneath it, and the next Publish signs that again with a new id.
func TestAReplayOnTopIsFoundByTheHistoryScan(t *testing.T) {
	store := newMemStore()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	keys := signing.NewKeySet(key)
	p := restart(t, store, keys)
	for _, value := range []string{"1", "2", "3"} {
		if _, err := p.Publish(t.Context(), discover(t, value), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	history, err := store.DesiredHistory(t.Context(), "prod-eu", "web")
	if err != nil {
		t.Fatal(err)
	}
	store.put("prod-eu", "web", history[0].State) // history 1, put back on top

	fresh := restart(t, store, keys)
	if _, err := fresh.CollectGarbage(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := fresh.Latest("prod-eu", "web").GetHistoryId(); got != 3 || !fresh.Resigning() {
		t.Fatalf("after the scan: latest history %d (resigning %v), want 3 and to be signed again", got, fresh.Resigning())
	}
	report, err := fresh.Publish(t.Context(), discover(t, "3"), nil, nil)
	if err != nil || len(report.Resigned) != 1 {
		t.Fatalf("publish over the replay: report %+v, error %v", report, err)
	}
	if got := fresh.Latest("prod-eu", "web").GetHistoryId(); got != 4 {
		t.Errorf("the replay was superseded by history %d, want 4", got)
	}
}
