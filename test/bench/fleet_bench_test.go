package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// fleetWaves is the number of waves, and clustersPerWave their size, of
// BenchmarkFleetWaveAdvance.
const (
	fleetWaves      = 3
	clustersPerWave = 100
)

// BenchmarkFleetWaveAdvance measures how fast a fleet rollout moves on:
// from the last cluster of wave N reporting the new revision Synced and
// Healthy to every desired state of wave N+1 published, with 100
// clusters per wave. The fixture's web ApplicationSet (RollingSync over a
// stage label) is rolled out to 300 registered clusters, ten times; the
// agents' reports are written to the status bucket as agents write them,
// so the hub's status watch, the rollout's progress and the publish are
// all measured.
func BenchmarkFleetWaveAdvance(b *testing.B) {
	h := startHub(b, time.Hour, nil)
	appSet := testenv.FixtureFile(b, flotillatest.FixtureRepo, "fleet/apps/web.yaml")
	appSet = strings.Replace(appSet, "flotilla.dev/waves: |", "flotilla.dev/ignored: |", 1) // health alone gates the waves
	steps := "      steps:\n"
	for i := range fleetWaves {
		steps += fmt.Sprintf("        - matchExpressions:\n            - {key: stage, operator: In, values: [wave-%d]}\n", i)
	}
	appSet = replaceSteps(b, appSet, steps)
	h.Commit(b, "the web fleet", map[string]string{"apps/web.yaml": appSet, "fleet/values.yaml": "version: v0\nprometheus: http://prometheus:9090\n"})
	waves := make([]map[string]bool, fleetWaves)
	for i := range fleetWaves {
		waves[i] = map[string]bool{}
		for j := range clustersPerWave {
			name := fmt.Sprintf("w%d-%03d", i, j)
			h.Register(b, name, map[string]string{"env": "production", "stage": fmt.Sprintf("wave-%d", i)})
			waves[i][appkey.Join(name, "web-"+name)] = true
		}
	}
	w, err := h.kv.Watch(b.Context(), "*.>", jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	var latencies []time.Duration
	version := 0
	for b.Loop() {
		for range 10 {
			version++
			h.Commit(b, fmt.Sprintf("deploy: web v%d", version), map[string]string{"fleet/values.yaml": fmt.Sprintf("version: v%d\nprometheus: http://prometheus:9090\n", version)})
			h.webhook(b)
			published := waitWave(b, w, waves[0])
			for i := 1; i < fleetWaves; i++ {
				start := reportHealthy(b, h, published)
				published = waitWave(b, w, waves[i])
				latencies = append(latencies, time.Since(start))
			}
			reportHealthy(b, h, published)
		}
	}
	b.ReportMetric(float64(percentile(latencies, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(latencies, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(latencies)), "advances")
}

// replaceSteps puts steps in place of the ApplicationSet's RollingSync
// steps.
func replaceSteps(b *testing.B, appSet, steps string) string {
	start := strings.Index(appSet, "      steps:\n")
	end := strings.Index(appSet, "  template:\n")
	if start < 0 || end < start {
		b.Fatal("the fixture's web ApplicationSet has no RollingSync steps")
	}
	return appSet[:start] + steps + appSet[end:]
}

// waitWave waits until every key of wave got a new desired state, and
// returns their history ids.
func waitWave(b *testing.B, w jetstream.KeyWatcher, wave map[string]bool) map[string]uint64 {
	b.Helper()
	got := map[string]uint64{}
	deadline := time.After(2 * time.Minute)
	for len(got) < len(wave) {
		select {
		case e := <-w.Updates():
			if e == nil || !wave[e.Key()] {
				continue
			}
			env := &flotillav1.SignedDesiredState{}
			ds := &flotillav1.DesiredState{}
			if proto.Unmarshal(e.Value(), env) != nil || proto.Unmarshal(env.GetDesiredState(), ds) != nil {
				b.Fatalf("%s: undecodable desired state", e.Key())
			}
			got[e.Key()] = ds.GetHistoryId()
		case <-deadline:
			b.Fatalf("%d of %d keys of the wave published", len(got), len(wave))
		}
	}
	return got
}

// reportHealthy writes each key's status at its history id, Synced and
// Healthy, as its agent would, and returns when the last was written.
func reportHealthy(b *testing.B, h *benchHub, keys map[string]uint64) time.Time {
	b.Helper()
	for key, id := range keys {
		cluster, app, _ := appkey.Split(key)
		st := &flotillav1.AppStatus{SchemaVersion: 1, Cluster: cluster, App: app, HistoryId: id, SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_SYNCED,
			Phase: flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED, Health: flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY}
		if err := h.Bus.PutStatus(b.Context(), st); err != nil {
			b.Fatal(err)
		}
	}
	return time.Now()
}
