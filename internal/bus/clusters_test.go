package bus

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// clusterRecorder collects what WatchClusters delivers.
type clusterRecorder struct {
	mu      sync.Mutex
	changes []ClusterChange
}

func (r *clusterRecorder) record(c ClusterChange) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

func (r *clusterRecorder) got() []ClusterChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ClusterChange(nil), r.changes...)
}

func registration(name, env string) *flotillav1.ClusterRegistration {
	return &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: name, Labels: map[string]string{"env": env}, AgentVersion: "dev"}
}

func TestWatchClustersDeliversRegistrationsThenChanges(t *testing.T) {
	b := newBus(t)
	prod := registration("prod-eu", "production")
	if err := b.Register(t.Context(), prod); err != nil {
		t.Fatal(err)
	}
	r := &clusterRecorder{}
	initial, err := b.WatchClusters(t.Context(), r.record)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-initial:
	case <-time.After(watchTimeout):
		t.Fatal("initial registrations not delivered")
	}
	if diff := cmp.Diff([]ClusterChange{{Name: "prod-eu", Registration: prod}}, r.got(), protocmp.Transform()); diff != "" {
		t.Errorf("registrations when initial closed (-want +got):\n%s", diff)
	}

	// A registration that does not decode is ignored; a relabel, a new
	// cluster and a deletion are changes.
	if _, err := b.clusters.Put(t.Context(), "corrupt", []byte{0xff}); err != nil {
		t.Fatal(err)
	}
	relabelled := registration("prod-eu", "canary")
	staging := registration("staging-1", "staging")
	for _, reg := range []*flotillav1.ClusterRegistration{relabelled, staging} {
		if err := b.Register(t.Context(), reg); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.clusters.Delete(t.Context(), "staging-1"); err != nil {
		t.Fatal(err)
	}
	want := []ClusterChange{
		{Name: "prod-eu", Registration: prod},
		{Name: "prod-eu", Registration: relabelled},
		{Name: "staging-1", Registration: staging},
		{Name: "staging-1"},
	}
	// The bucket keeps one entry per key: a registration deleted before the
	// watch read it (a loaded machine) is gone, and only its deletion is a
	// change. Every other change arrives, in order.
	withoutPut := slices.Delete(slices.Clone(want), 2, 3)
	eventually(t, watchTimeout, func() error {
		got := r.got()
		if cmp.Diff(withoutPut, got, protocmp.Transform()) == "" {
			return nil
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			return fmt.Errorf("changes (-want +got):\n%s", diff)
		}
		return nil
	})
}

// TestRegistrationExpiresWithoutHeartbeats: the entry goes after the TTL.
// WatchClusters is not told (see ClusterChange); the hub judges liveness
// by the heartbeat time it saw.
func TestRegistrationExpiresWithoutHeartbeats(t *testing.T) {
	s := startServer(t)
	opts := DefaultOptions()
	opts.ClusterTTL = time.Second
	b := s.provision(&opts)
	if err := b.Register(t.Context(), registration("prod-eu", "production")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*opts.ClusterTTL, func() error {
		if _, err := b.clusters.Get(t.Context(), "prod-eu"); err == nil {
			return fmt.Errorf("registration still there")
		}
		return nil
	})
}
