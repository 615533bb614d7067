//go:build soak

package e2e

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// soakDuration is how long TestSoak injects faults (`make soak DURATION=10m`).
var soakDuration = flag.Duration("soak", 10*time.Minute, "how long TestSoak injects faults while commits land")

// fault is one kind of failure the soak injects and then repairs.
type fault struct {
	name   string
	inject func(t *testing.T) (repair func(t *testing.T))
}

// TestSoak runs the HA fleet of TestHubReplicasLoseANATSNodeAndTheirLeader
// for -soak: a commit every 2–5 s while, one at a time, a random fault
// (the hub leader killed, a follower and its NATS node killed, an agent
// killed, a cluster's API server killed) lasts 5–30 s, 5–20 s apart. Then
// everything is repaired, one last commit lands, and the fault suite's
// invariants are checked in both clusters. It prints what it did: faults
// by kind, commits, syncs, and how long the commits took to reach both
// clusters (p50, max). Not part of `make test`.
func TestSoak(t *testing.T) {
	f := startHAFleet(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("soak for %s, seed %d", *soakDuration, seed)

	// Commits, and when each was first seen synced in both clusters.
	var mu sync.Mutex
	var commits []string
	committed := map[string]time.Time{}
	index := map[string]int{}
	var converge []time.Duration
	reached := -1 // the newest commit index both clusters run
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			low := -1
			for i, name := range f.names {
				st, err := f.bus.GetStatus(t.Context(), name, "worker-service")
				mu.Lock()
				at, ok := index[st.GetRevision()]
				mu.Unlock()
				if err != nil || !ok || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
					low = -1
					break
				}
				if i == 0 || at < low {
					low = at
				}
			}
			mu.Lock()
			for ; reached < low; reached++ {
				converge = append(converge, time.Since(committed[commits[reached+1]]))
			}
			mu.Unlock()
		}
	}()
	commit := func(tag string) {
		head := f.commit(t, tag)
		mu.Lock()
		defer mu.Unlock()
		index[head] = len(commits)
		commits = append(commits, head)
		committed[head] = time.Now()
	}

	faults := []fault{
		{"hub leader killed", func(t *testing.T) func(*testing.T) {
			i := f.leader(t, -1)
			f.kill(t, i)
			return func(t *testing.T) { f.start(t, i); f.waitServing(t, i) }
		}},
		{"hub follower and its NATS node killed", func(t *testing.T) func(*testing.T) {
			i := (f.leader(t, -1) + 1 + rng.IntN(2)) % 3
			f.kill(t, i)
			return func(t *testing.T) { f.start(t, i); f.waitServing(t, i) }
		}},
		{"agent killed", func(t *testing.T) func(*testing.T) {
			a := f.agents[f.names[rng.IntN(len(f.names))]]
			must(t, a.Kill())
			return a.restart
		}},
		{"API server killed", func(t *testing.T) func(*testing.T) {
			c := f.clusters[f.names[rng.IntN(len(f.names))]]
			c.KillAPIServer(t)
			return func(t *testing.T) { c.StartAPIServer(t) }
		}},
	}
	injected := map[string]int{}
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }

	end := time.Now().Add(*soakDuration)
	nextCommit, nextFault := time.Now(), time.Now().Add(between(5*time.Second, 20*time.Second))
	var repair func(*testing.T)
	var repairAt time.Time
	for n := 0; time.Now().Before(end); {
		now := time.Now()
		switch {
		case !now.Before(nextCommit):
			n++
			commit(fmt.Sprintf("soak-%d", n))
			nextCommit = now.Add(between(2*time.Second, 5*time.Second))
		case repair != nil && !now.Before(repairAt):
			repair(t)
			repair = nil
			nextFault = time.Now().Add(between(5*time.Second, 20*time.Second))
		case repair == nil && !now.Before(nextFault):
			fl := faults[rng.IntN(len(faults))]
			t.Logf("%s: %s", time.Now().Format(time.TimeOnly), fl.name)
			injected[fl.name]++
			repair, repairAt = fl.inject(t), time.Now().Add(between(5*time.Second, 30*time.Second))
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	if repair != nil {
		repair(t)
	}

	commit("soak-final")
	mu.Lock()
	head := commits[len(commits)-1]
	mu.Unlock()
	for _, name := range f.names {
		testenv.Eventually(t, 5*time.Minute, func() error {
			return converged(t, f.bus, f.verify, name, "worker-service", head, f.first[name])
		})
		if after := deploymentNames(t, f.clusters[name]); !slices.Equal(after, f.deployments[name]) {
			t.Errorf("%s: Deployments %v, want %v as before the soak", name, after, f.deployments[name])
		}
	}
	testenv.Eventually(t, time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		if reached < len(commits)-1 {
			return fmt.Errorf("the sampler saw commit %d of %d in both clusters", reached+1, len(commits))
		}
		return nil
	})
	close(stopSampling)
	<-sampled

	syncs := 0
	for _, name := range f.names {
		events, err := f.bus.Events(t.Context(), name, "worker-service", 10000)
		must(t, err)
		for _, ev := range events {
			if ev.GetReason() == flotillav1.ReasonSyncSucceeded && ev.GetHistoryId() > f.first[name] {
				syncs++
			}
		}
	}
	slices.Sort(converge)
	summary := fmt.Sprintf("soak %s (seed %d): %d commits, %d syncs of worker-service in 2 clusters, faults %v; commit → both clusters synced: p50 %s, max %s",
		*soakDuration, seed, len(commits), syncs, injected, converge[len(converge)/2].Round(100*time.Millisecond), converge[len(converge)-1].Round(100*time.Millisecond))
	t.Log(summary)
	fmt.Println(summary)
}
