package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/hub"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

const (
	repoURL = "https://github.com/your-org/gitops-config"
	secret  = "bench-secret"
	// token is an operator's API token.
	token = "bench-operator-token"
)

type benchHub struct {
	git    *testenv.GitServer
	hub    *hub.Hub
	apiURL string
	bus    *bus.Bus
	kv     jetstream.KeyValue
}

func (h *benchHub) natsURL(*testing.B) string { return h.hub.NATSURL() }

// startHub runs a hub on the fixture repository with the given extra
// repositories (bare directories served over file://).
func startHub(b *testing.B, pollInterval time.Duration, extraRepos []string) *benchHub {
	b.Helper()
	h := &benchHub{git: testenv.NewGitServer(b, testenv.GitServerOptions{})}
	h.git.CreateRepo(b, "gitops-config")
	h.git.PushDir(b, "gitops-config", "main", "initial import", testenv.Fixture(b, "gitops-config"))
	dir := b.TempDir()
	b.Setenv("FLOTILLA_BENCH_TOKEN", token)
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		b.Fatal(err)
	}
	var repos strings.Builder
	fmt.Fprintf(&repos, "  - {url: %s, fetchURL: %s, pollInterval: %s}\n", repoURL, h.git.RepoURL("gitops-config"), pollInterval)
	for i, r := range extraRepos {
		fmt.Fprintf(&repos, "  - {url: https://git.example.com/repo-%d, fetchURL: file://%s, pollInterval: %s}\n", i, r, pollInterval)
	}
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
dataDir: %s
nats: {embeddedListen: 127.0.0.1:-1}
repositories:
%s
roots:
  - {name: production, repo: %s, path: apps, clusters: env=production}
webhook: {secretFile: %s}
api:
  tokens: [{name: bench, role: operator, tokenEnv: FLOTILLA_BENCH_TOKEN}]
`, filepath.Join(dir, "data"), repos.String(), repoURL, secretFile)))
	if err != nil {
		b.Fatal(err)
	}
	hb, err := hub.New(b.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	h.hub = hb
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	h.apiURL = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hb.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		<-done
		hb.Close()
	})
	nc, err := nats.Connect(hb.NATSURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	if h.bus, err = bus.Open(b.Context(), nc); err != nil {
		b.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if h.kv, err = js.KeyValue(b.Context(), bus.DesiredBucket); err != nil {
		b.Fatal(err)
	}
	return h
}

func (h *benchHub) webhook(b *testing.B) {
	body := []byte(`{"repository":{"clone_url":"` + repoURL + `.git"}}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, h.apiURL+"/api/webhook", bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Fatalf("webhook: %d", resp.StatusCode)
	}
}

// registerClusters registers n production clusters as agents would.
func (h *benchHub) registerClusters(b *testing.B, n int) {
	for i := range n {
		if err := h.bus.Register(b.Context(), &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: fmt.Sprintf("prod-%05d", i), Labels: map[string]string{"env": "production"}}); err != nil {
			b.Fatal(err)
		}
	}
}

func bumpTag(b *testing.B, h *benchHub, tag string) {
	values := "replicaCount: 10\nimage:\n  tag: \"" + tag + "\"\nautoscaling:\n  enabled: true\n  minReplicas: 10\n  maxReplicas: 30\ningress:\n  enabled: true\n  host: api.example.com\nrollout:\n  enabled: true\n"
	h.git.WriteFiles(b, "gitops-config", "main", "deploy: api-service "+tag, map[string]string{"environments/production/api-service-values.yaml": values})
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
	key := bus.Key("prod-00000", "api-service")
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
			worker, err := os.ReadFile(filepath.Join(testenv.Fixture(b, "gitops-config"), "apps", "worker-service.yaml"))
			if err != nil {
				b.Fatal(err)
			}
			h.git.WriteFiles(b, "gitops-config", "main", "add a fifth app", map[string]string{
				"apps/batch-service.yaml": strings.Replace(string(worker), "name: worker-service", "name: batch-service", 1),
			})
			keys := map[string]bool{}
			for i := range clusters {
				keys[bus.Key(fmt.Sprintf("prod-%05d", i), "api-service")] = true
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
	var repos []string
	src := b.TempDir()
	cmd := func(dir string, args ...string) {
		c := testenvGit(dir, args...)
		if out, err := c.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	cmd(src, "init", "--quiet", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("idle"), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd(src, "add", ".")
	cmd(src, "commit", "--quiet", "-m", "idle")
	for i := range 49 {
		dst := filepath.Join(b.TempDir(), fmt.Sprintf("repo-%d.git", i))
		cmd(src, "clone", "--quiet", "--bare", src, dst)
		repos = append(repos, dst)
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
