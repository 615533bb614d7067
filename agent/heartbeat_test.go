package agent

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestHeartbeatRegistersAfterAReconnect: the agent registers at its start
// and again at once when its connection comes back, not only at its next
// interval (here an hour): a hub that restarted holds the cluster's
// desired states until it hears from it.
func TestHeartbeatRegistersAfterAReconnect(t *testing.T) {
	n := testenv.StartNATS(t)
	hub, err := bus.Provision(t.Context(), n.Connect(t), bus.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var heartbeats []time.Time
	if _, err := hub.WatchClusters(t.Context(), func(c bus.ClusterChange) {
		mu.Lock()
		defer mu.Unlock()
		heartbeats = append(heartbeats, c.Registration.GetHeartbeatAt().AsTime())
	}); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(heartbeats)
	}

	nc := n.Connect(t)
	b, err := bus.Open(nc)
	if err != nil {
		t.Fatal(err)
	}
	reg := &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: "prod-eu"}
	go heartbeat(t.Context(), nc, b, reg, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testenv.Eventually(t, 10*time.Second, func() error {
		if count() != 1 {
			return fmt.Errorf("%d registrations, want the first", count())
		}
		return nil
	})
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if count() != 2 {
			return fmt.Errorf("%d registrations, want one more after the reconnect", count())
		}
		return nil
	})
}
