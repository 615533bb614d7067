package bus

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func appStatus(cluster, app string, id uint64, phase flotillav1.SyncPhase) *flotillav1.AppStatus {
	return &flotillav1.AppStatus{SchemaVersion: 1, Cluster: cluster, App: app, HistoryId: id, Phase: phase, Message: fmt.Sprintf("history %d", id)}
}

func TestGetStatusReadsWhatPutStatusWrote(t *testing.T) {
	b := newBus(t)
	first := appStatus("prod-eu", "api-service", 1, flotillav1.SyncPhase_SYNC_PHASE_RUNNING)
	second := appStatus("prod-eu", "api-service", 1, flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED)
	for _, st := range []*flotillav1.AppStatus{first, second} {
		if err := b.PutStatus(t.Context(), st); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.GetStatus(t.Context(), "prod-eu", "api-service")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(second, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetStatus (-want +got):\n%s", diff)
	}
}

func TestGetStatusNotFound(t *testing.T) {
	b := newBus(t)
	if err := b.PutStatus(t.Context(), appStatus("prod-eu", "api-service", 1, flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.status.Put(t.Context(), appkey.Join("prod-eu", "corrupt"), []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cluster, app string
		wantNotFound       bool
	}{
		{name: "another app", cluster: "prod-eu", app: "worker-service", wantNotFound: true},
		{name: "another cluster", cluster: "staging-1", app: "api-service", wantNotFound: true},
		// A status that does not decode is there: an error, but not
		// ErrNotFound.
		{name: "corrupt", cluster: "prod-eu", app: "corrupt", wantNotFound: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.GetStatus(t.Context(), tc.cluster, tc.app)
			if err == nil || errors.Is(err, ErrNotFound) != tc.wantNotFound {
				t.Errorf("GetStatus = %v, want an error that is ErrNotFound: %t", err, tc.wantNotFound)
			}
		})
	}
}

func TestStatusesSkipsWhatDoesNotDecode(t *testing.T) {
	b := newBus(t)
	if got, err := b.Statuses(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("Statuses of an empty bucket = %v, %v", got, err)
	}
	want := map[string]*flotillav1.AppStatus{}
	for _, st := range []*flotillav1.AppStatus{
		appStatus("prod-eu", "api-service", 3, flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED),
		appStatus("prod-eu", "worker-service", 1, flotillav1.SyncPhase_SYNC_PHASE_FAILED),
		appStatus("staging-1", "api-service", 2, flotillav1.SyncPhase_SYNC_PHASE_RUNNING),
	} {
		if err := b.PutStatus(t.Context(), st); err != nil {
			t.Fatal(err)
		}
		want[appkey.Join(st.GetCluster(), st.GetApp())] = st
	}
	if _, err := b.status.Put(t.Context(), appkey.Join("prod-eu", "corrupt"), []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutStatus(t.Context(), appStatus("prod-eu", "deleted", 1, flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED)); err != nil {
		t.Fatal(err)
	}
	if err := b.status.Delete(t.Context(), appkey.Join("prod-eu", "deleted")); err != nil {
		t.Fatal(err)
	}

	got, err := b.Statuses(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("Statuses (-want +got):\n%s", diff)
	}
}

func TestWatchStatusesDeliversCurrentThenChanges(t *testing.T) {
	b := newBus(t)
	before := appStatus("prod-eu", "api-service", 1, flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED)
	if err := b.PutStatus(t.Context(), before); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got = map[string]*flotillav1.AppStatus{}
	)
	initial, err := b.WatchStatuses(t.Context(), func(key string, st *flotillav1.AppStatus) {
		mu.Lock()
		got[key] = st
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-initial:
	case <-time.After(watchTimeout):
		t.Fatal("initial statuses not delivered")
	}
	mu.Lock()
	if diff := cmp.Diff(map[string]*flotillav1.AppStatus{"prod-eu.api-service": before}, got, protocmp.Transform()); diff != "" {
		t.Errorf("statuses when initial closed (-want +got):\n%s", diff)
	}
	mu.Unlock()

	after := proto.Clone(before).(*flotillav1.AppStatus)
	after.HistoryId = 2
	other := appStatus("staging-1", "api-service", 1, flotillav1.SyncPhase_SYNC_PHASE_RUNNING)
	if _, err := b.status.Put(t.Context(), appkey.Join("prod-eu", "corrupt"), []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*flotillav1.AppStatus{after, other} {
		if err := b.PutStatus(t.Context(), st); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]*flotillav1.AppStatus{"prod-eu.api-service": after, "staging-1.api-service": other}
	eventually(t, watchTimeout, func() error {
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			return fmt.Errorf("statuses (-want +got):\n%s", diff)
		}
		return nil
	})
}
