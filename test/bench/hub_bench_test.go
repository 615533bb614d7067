package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// benchHub is a hub on the fixture repository (flotillatest.StartHub),
// with its desired-state bucket, to follow what it publishes.
type benchHub struct {
	*flotillatest.Hub
	kv jetstream.KeyValue
}

// startHub runs a hub on the fixture repository beside the given
// repositories, polling each at pollInterval, with its log discarded.
func startHub(b *testing.B, pollInterval time.Duration, repos []flotillatest.Repository) *benchHub {
	b.Helper()
	return startHubWith(b, flotillatest.HubOptions{PollInterval: pollInterval, Repositories: repos})
}

// startHubWith runs a hub with opts, its log discarded.
func startHubWith(b *testing.B, opts flotillatest.HubOptions) *benchHub {
	b.Helper()
	opts.Log = slog.New(slog.DiscardHandler)
	h := &benchHub{Hub: flotillatest.StartHub(b, opts)}
	js, err := jetstream.New(h.NATS)
	if err != nil {
		b.Fatal(err)
	}
	if h.kv, err = js.KeyValue(b.Context(), bus.DesiredBucket); err != nil {
		b.Fatal(err)
	}
	return h
}

// webhook tells the hub about a push, and fails unless it took it.
func (h *benchHub) webhook(b *testing.B) {
	b.Helper()
	if code := h.Webhook(b, flotillatest.WebhookSecret); code != http.StatusAccepted {
		b.Fatalf("webhook: %d", code)
	}
}

// registerClusters registers n production clusters as agents would.
func (h *benchHub) registerClusters(b *testing.B, n int) {
	for i := range n {
		h.Register(b, fmt.Sprintf("prod-%05d", i), map[string]string{"env": "production"})
	}
}

// bumpTag commits a new image tag of api-service in production, as CI does.
func bumpTag(b *testing.B, h *benchHub, tag string) {
	values := "replicaCount: 10\nimage:\n  tag: \"" + tag + "\"\nautoscaling:\n  enabled: true\n  minReplicas: 10\n  maxReplicas: 30\ningress:\n  enabled: true\n  host: api.example.com\nrollout:\n  enabled: true\n"
	h.Commit(b, "deploy: api-service "+tag, map[string]string{"environments/production/api-service-values.yaml": values})
}

// waitHistory waits until every key in keys has reached history id.
func waitHistory(b *testing.B, kv jetstream.KeyValue, w jetstream.KeyWatcher, keys map[string]bool, id uint64) {
	pending := len(keys)
	deadline := time.After(2 * time.Minute)
	for pending > 0 {
		select {
		case e := <-w.Updates():
			if e == nil || !keys[e.Key()] {
				continue
			}
			env := &flotillav1.SignedDesiredState{}
			ds := &flotillav1.DesiredState{}
			if proto.Unmarshal(e.Value(), env) != nil || proto.Unmarshal(env.GetDesiredState(), ds) != nil {
				continue
			}
			if ds.GetHistoryId() == id {
				pending--
			}
		case <-deadline:
			b.Fatalf("%d keys did not reach history %d", pending, id)
		}
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkWebhookToPublished measures from a push webhook to the new
// desired state in the bucket, over 20 image-tag commits.
func BenchmarkWebhookToPublished(b *testing.B) {
	h := startHub(b, time.Hour, nil)
	h.registerClusters(b, 1)
	key := appkey.Join("prod-00000", "api-service")
	w, err := h.kv.Watch(b.Context(), key, jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	testenv.Eventually(b, time.Minute, func() error {
		_, err := h.kv.Get(context.Background(), key)
		return err
	})
	var latencies []time.Duration
	history := uint64(1)
	for b.Loop() {
		for i := range 20 {
			bumpTag(b, h, fmt.Sprintf("bench-%d-%d", history, i))
			history++
			start := time.Now()
			h.webhook(b)
			waitHistory(b, h.kv, w, map[string]bool{key: true}, history)
			latencies = append(latencies, time.Since(start))
		}
	}
	b.ReportMetric(float64(percentile(latencies, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(latencies, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkFanOut measures one app change published to every registered
// cluster, each running five applications: from the webhook to the last
// cluster's entry written, and the process's memory with them all.
func BenchmarkFanOut(b *testing.B) {
	for _, clusters := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("clusters=%d", clusters), func(b *testing.B) {
			h := startHub(b, time.Hour, nil)
			// A fifth production application, so every cluster has five.
			worker := testenv.FixtureFile(b, flotillatest.FixtureRepo, "apps/worker-service.yaml")
			h.Commit(b, "add a fifth app", map[string]string{
				"apps/batch-service.yaml": strings.Replace(worker, "name: worker-service", "name: batch-service", 1),
			})
			keys := map[string]bool{}
			for i := range clusters {
				keys[appkey.Join(fmt.Sprintf("prod-%05d", i), "api-service")] = true
			}
			w, err := h.kv.Watch(b.Context(), "*.api-service")
			if err != nil {
				b.Fatal(err)
			}
			defer w.Stop()
			h.registerClusters(b, clusters)
			waitHistory(b, h.kv, w, keys, 1)
			history := uint64(1)
			var total time.Duration
			for b.Loop() {
				bumpTag(b, h, fmt.Sprintf("fan-%d", history))
				history++
				start := time.Now()
				h.webhook(b)
				waitHistory(b, h.kv, w, keys, history)
				total += time.Since(start)
			}
			b.ReportMetric(total.Seconds()/float64(history-1), "s/fanout")
			reportMemory(b)
		})
	}
}

// BenchmarkIdlePolling measures the hub's CPU while it polls 50 unchanged
// repositories at the default interval.
func BenchmarkIdlePolling(b *testing.B) {
	// 49 copies of a one-commit repository, fetched over file://.
	git := testenv.NewGitServer(b, testenv.GitServerOptions{})
	git.CreateRepo(b, "idle")
	git.WriteFiles(b, "idle", "main", "idle", map[string]string{"README": "idle"})
	var repos []flotillatest.Repository
	for i := range 49 {
		dst := filepath.Join(b.TempDir(), fmt.Sprintf("repo-%d.git", i))
		testenv.Git(b, "", "clone", "--quiet", "--bare", git.BareDir("idle"), dst)
		repos = append(repos, flotillatest.Repository{URL: fmt.Sprintf("https://git.example.com/repo-%d", i), FetchURL: "file://" + dst})
	}
	startHub(b, config.DefaultPollInterval, repos)
	window := 60 * time.Second
	for b.Loop() {
		time.Sleep(config.DefaultPollInterval) // let the first polls settle
		before := cpuTime()
		start := time.Now()
		time.Sleep(window)
		used := cpuTime() - before
		b.ReportMetric(100*used.Seconds()/time.Since(start).Seconds(), "cpu-%")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportMemory reports the process's resident set and Go heap. The process
// holds the hub and the embedded NATS server (and the benchmark's client).
func reportMemory(b *testing.B) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(rssBytes())/(1<<20), "rss-MiB")
}

func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	fmt.Sscan(string(data), &size, &resident)
	return resident * int64(os.Getpagesize())
}
