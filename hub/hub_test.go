package hub

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// A hub that cannot start returns the reason; it used to panic in its own
// cleanup (Close on the nil it was returning).
func TestNewReportsAFailedStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg, err := config.Parse("hub.yaml", []byte("dataDir: "+t.TempDir()+"\nnats:\n  embeddedListen: "+taken.Addr().String()+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		h.Close()
		t.Fatalf("New on a taken NATS port succeeded")
	}
	if h != nil {
		t.Errorf("New returned a hub with its error %v", err)
	}
	if !strings.Contains(err.Error(), taken.Addr().String()) && !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
		t.Errorf("error %q does not say the port is taken", err)
	}
}

// Held clusters keep what was published for them: a revoked one, and one
// whose agent has not registered since this replica started (its
// registration expired while no replica followed it). Found by the fleet
// simulator: a hub restarted into 10,000 reconnecting agents, whose
// heartbeats had timed out for longer than the registration's TTL,
// published deletions of every application of the clusters it had not
// heard from yet.
func TestHeldClusters(t *testing.T) {
	h := &Hub{
		identities: map[string]bus.Identity{
			"prod-eu":   {Name: "prod-eu"},
			"prod-us":   {Name: "prod-us"},
			"staging-1": {Name: "staging-1", RevokedAt: time.Unix(1, 0)},
			"new-1":     {Name: "new-1"},
		},
		clusters: map[string]*flotillav1.ClusterRegistration{
			"prod-eu":   {Name: "prod-eu"},
			"staging-1": {Name: "staging-1"},
			"unknown":   {Name: "unknown"}, // no identity: never a target
		},
	}
	got := h.clusterView()
	want := map[string]bool{"prod-us": true, "staging-1": true, "new-1": true}
	if diff := cmp.Diff(want, got.held); diff != "" {
		t.Errorf("held clusters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]appspec.Cluster{{Name: "prod-eu"}}, got.known); diff != "" {
		t.Errorf("known clusters (-want +got):\n%s", diff)
	}
}
