package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/clustercreds"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

var (
	fleetsimAgents = flag.String("fleetsim-agents", "1000", "the fleet sizes BenchmarkFleetSimulator runs, comma-separated")
	fleetsimLogs   = flag.String("fleetsim-logs", "", "a directory BenchmarkFleetSimulator writes the hub's and the simulated agents' logs to, the agents' at level info (for diagnosis); none by default")
)

// simLog is where a process of BenchmarkFleetSimulator logs: a new file
// named after it under -fleetsim-logs, or nowhere.
func simLog(b *testing.B, name string) io.Writer {
	if *fleetsimLogs == "" {
		return io.Discard
	}
	f, err := os.CreateTemp(*fleetsimLogs, name+"-*.log")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// simApps is how many applications each simulated cluster runs in
// BenchmarkFleetSimulator.
const simApps = 5

// simHub is the hub binary with its embedded NATS server, on a repository
// of small applications for every cluster, so that its process's CPU and
// memory are the hub's and NATS's alone.
type simHub struct {
	git    *testenv.GitServer
	bin    string
	args   []string
	proc   *agentProcess
	apiURL string
	client flotillav1connect.HubServiceClient
	http   *http.Client
	bus    *bus.Bus
	nc     *nats.Conn
}

const simAdminToken = "sim-admin-token"

// startSimHub starts the hub on a repository of apps applications, each a
// ConfigMap, for every cluster.
func startSimHub(b *testing.B, apps int) *simHub {
	b.Helper()
	h := &simHub{git: testenv.NewGitServer(b, testenv.GitServerOptions{}), bin: testenv.BuildCommand(b, "./cmd/hub")}
	h.git.CreateRepo(b, "sim")
	files := map[string]string{}
	for i := range apps {
		files[fmt.Sprintf("apps/app-%d.yaml", i)] = simApplication(i)
		files[fmt.Sprintf("sim/app-%d/config.yaml", i)] = simConfigMap(i, "v1")
	}
	h.git.WriteFiles(b, "sim", "main", fmt.Sprintf("%d small applications", apps), files)
	data := b.TempDir()
	if out, err := exec.Command(h.bin, "init", "-data-dir", data).CombinedOutput(); err != nil {
		b.Fatalf("hub init: %v: %s", err, out)
	}
	secrets := b.TempDir()
	secret := func(name, value string) string {
		path := filepath.Join(secrets, name)
		if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
			b.Fatal(err)
		}
		return path
	}
	// Restarted under N clients, its ports must not be ephemeral ones.
	addrs := testenv.FreeServerAddrs(b, 2)
	h.apiURL = "https://" + addrs[0]
	config := filepath.Join(b.TempDir(), "hub.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`
dataDir: %s
listen: %s
nats: {embeddedListen: %s, advertiseURL: tls://%s}
repositories:
  - {url: %s, fetchURL: %s, pollInterval: 1h}
roots:
  - {name: sim, repo: %s, path: apps}
webhook: {secretFile: %s}
api:
  tokens:
    - {name: root, role: admin, tokenFile: %s}
`, data, addrs[0], addrs[1], addrs[1], flotillatest.RepoURL, h.git.RepoURL("sim"), flotillatest.RepoURL, secret("webhook", flotillatest.WebhookSecret), secret("admin", simAdminToken))), 0o600); err != nil {
		b.Fatal(err)
	}
	h.args = []string{"-config", config}
	h.start(b)

	ca, err := os.ReadFile(filepath.Join(data, "tls", tlsca.CAFile))
	if err != nil {
		b.Fatal(err)
	}
	clientTLS, err := tlsca.ClientConfig(ca)
	if err != nil {
		b.Fatal(err)
	}
	h.http = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS, MaxIdleConnsPerHost: 16}, Timeout: time.Minute}
	h.waitServing(b, 2*time.Minute)
	h.client = flotillav1connect.NewHubServiceClient(h.http, h.apiURL, connect.WithInterceptors(bearerToken(simAdminToken)))
	authority, err := natsauth.LoadOrCreate(filepath.Join(data, "trust"))
	if err != nil {
		b.Fatal(err)
	}
	creds, _, err := authority.User("bench", natsauth.HubPermissions())
	if err != nil {
		b.Fatal(err)
	}
	user, err := natsauth.Credentials(creds)
	if err != nil {
		b.Fatal(err)
	}
	if h.nc, err = nats.Connect("tls://"+addrs[1], user, nats.Secure(clientTLS), nats.MaxReconnects(-1)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.nc.Close)
	if h.bus, err = bus.Bind(b.Context(), h.nc); err != nil {
		b.Fatal(err)
	}
	return h
}

func simApplication(i int) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: app-%d, namespace: argocd}
spec:
  project: default
  source: {repoURL: %s, targetRevision: HEAD, path: sim/app-%d}
  destination: {server: https://kubernetes.default.svc, namespace: app-%d}
  syncPolicy: {automated: {prune: true}}
`, i, flotillatest.RepoURL, i, i)
}

func simConfigMap(i int, version string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-%d}\ndata: {version: %s}\n", i, version)
}

func (h *simHub) start(b *testing.B) {
	h.proc = startLoggedProcess(b, simLog(b, "hub"), h.bin, h.args...)
}

// waitServing waits until the hub serves its API, for at most timeout.
func (h *simHub) waitServing(b *testing.B, timeout time.Duration) {
	b.Helper()
	testenv.WaitServing(b, h.http, h.apiURL, timeout)
}

// addClusters adds n clusters through the API, as `flotilla cluster add
// --out` does, writing their bundles under a directory it returns.
func (h *simHub) addClusters(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			name := fmt.Sprintf("sim-%05d", i)
			resp, err := h.client.AddCluster(context.Background(), connect.NewRequest(&flotillav1.AddClusterRequest{Name: name, Labels: map[string]string{"fleet": "sim"}}))
			if err != nil {
				return fmt.Errorf("add cluster %s: %w", name, err)
			}
			return clustercreds.Write(filepath.Join(dir, name), resp.Msg.GetCredentials())
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return dir
}

func (h *simHub) commit(b *testing.B, version string) {
	b.Helper()
	h.git.WriteFiles(b, "sim", "main", "app-0 "+version, map[string]string{"sim/app-0/config.yaml": simConfigMap(0, version)})
}

func (h *simHub) webhook(b *testing.B) {
	b.Helper()
	if code := flotillatest.PostWebhook(b, h.http, h.apiURL, flotillatest.WebhookSecret); code != http.StatusAccepted {
		b.Fatalf("webhook: HTTP %d", code)
	}
}

func bearerToken(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

// applied follows the status bucket: when each (cluster, app) first
// reported a history id applied.
type applied struct {
	mu   sync.Mutex
	at   map[string]map[uint64]time.Time
	seen chan struct{}
}

func watchApplied(b *testing.B, h *simHub) *applied {
	a := &applied{at: map[string]map[uint64]time.Time{}, seen: make(chan struct{}, 1)}
	a.watch(b, h)
	return a
}

// watch follows the status bucket (again, after the hub's NATS server
// restarted: a watcher does not outlive its server). A server busy with
// a reconnecting fleet may take longer than a request's 5 s to set the
// watch up: it is tried again for up to 5 minutes, as the hub does.
func (a *applied) watch(b *testing.B, h *simHub) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		err := a.follow(b.Context(), h)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("watch the statuses: %v", err)
		}
		time.Sleep(time.Second)
	}
}

func (a *applied) follow(ctx context.Context, h *simHub) error {
	_, err := h.bus.WatchStatuses(ctx, func(key string, st *flotillav1.AppStatus) {
		if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
			return
		}
		now := time.Now()
		a.mu.Lock()
		if a.at[key] == nil {
			a.at[key] = map[uint64]time.Time{}
		}
		if _, ok := a.at[key][st.GetHistoryId()]; !ok {
			a.at[key][st.GetHistoryId()] = now
		}
		a.mu.Unlock()
		select {
		case a.seen <- struct{}{}:
		default:
		}
	})
	return err
}

// wait waits until every key has reported history id, and returns when
// each did.
func (a *applied) wait(b *testing.B, keys []string, id uint64, timeout time.Duration) []time.Time {
	b.Helper()
	deadline := time.After(timeout)
	for {
		a.mu.Lock()
		var times []time.Time
		for _, k := range keys {
			if t, ok := a.at[k][id]; ok {
				times = append(times, t)
			}
		}
		a.mu.Unlock()
		if len(times) == len(keys) {
			return times
		}
		select {
		case <-a.seen:
		case <-time.After(time.Second):
		case <-deadline:
			b.Fatalf("%d of %d applications reported history %d applied; not: %s", len(times), len(keys), id, a.missing(keys, id, 20))
		}
	}
}

// simKeys are the status keys of apps applications in each of n
// simulated clusters.
func simKeys(n, apps int) []string {
	var keys []string
	for i := range n {
		for app := range apps {
			keys = append(keys, appkey.Join(fmt.Sprintf("sim-%05d", i), fmt.Sprintf("app-%d", app)))
		}
	}
	return keys
}

// startFleet adds n clusters and starts the fleet simulator's n agents,
// all at once, and waits until they reported all apps applications of
// each applied. It returns the simulator's processes, how long adding the
// clusters took and how long the first sync (a reconnect storm of n
// agents, longer the larger the fleet).
func (h *simHub) startFleet(b *testing.B, a *applied, n, apps int) (sims []*agentProcess, addClusters, firstSync time.Duration) {
	b.Helper()
	start := time.Now()
	bundles := h.addClusters(b, n)
	addClusters = time.Since(start)
	start = time.Now()
	bin := testenv.BuildCommand(b, "./test/bench/fleetsim/cmd/fleetsim")
	shards := (n + agentsPerSimulator - 1) / agentsPerSimulator
	for shard := range shards {
		args := []string{"-bundles", bundles, "-cache-dir", b.TempDir(), "-shard", fmt.Sprint(shard), "-shards", fmt.Sprint(shards)}
		if *fleetsimLogs != "" {
			// Each agent's syncs and catch-ups, and CPU profiles of the
			// commit and the restart (profileSims), for diagnosis.
			args = append(args, "-log-level", "info", "-profile-dir", *fleetsimLogs)
		}
		sims = append(sims, startLoggedProcess(b, simLog(b, "fleetsim"), bin, args...))
	}
	a.wait(b, simKeys(n, apps), 1, time.Duration(10+n*apps/5000)*time.Minute)
	return sims, addClusters, time.Since(start)
}

// agentsPerSimulator is how many simulated agents share a process. A
// real agent has a process of its own; a simulator's agents share its
// file descriptors, which this machine caps at 20,000 a process (raising
// the cap needs CAP_SYS_RESOURCE): 10,000 agents in one process, each
// with its connection, met "too many open files" whenever they rendered
// at once (a commit, a restart). 5,000 leave each agent four.
const agentsPerSimulator = 5000

// missing names up to limit of keys that have not reported history id.
func (a *applied) missing(keys []string, id uint64, limit int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, k := range keys {
		if _, ok := a.at[k][id]; !ok && len(out) < limit {
			out = append(out, k)
		}
	}
	return strings.Join(out, ", ")
}

// reportNow reports a metric and logs it at once: a size whose later
// step fails (a 10,000-agent run) still shows what it measured.
func reportNow(b *testing.B, value float64, unit string) {
	b.Helper()
	b.ReportMetric(value, unit)
	b.Logf("%s: %.2f", unit, value)
}

// latencies are times since start, sorted.
func latencies(start time.Time, times []time.Time) []time.Duration {
	out := make([]time.Duration, len(times))
	for i, t := range times {
		out[i] = t.Sub(start)
	}
	return out
}

// profileSims has each simulator write a 10-second CPU profile under
// -fleetsim-logs (none without it).
func profileSims(sims []*agentProcess) {
	if *fleetsimLogs == "" {
		return
	}
	for _, sim := range sims {
		_ = sim.cmd.Process.Signal(syscall.SIGUSR1)
	}
}

// usage measures the CPU the hub and the simulators use from its start.
type usage struct {
	hub, sims []int
	hubCPU    time.Duration
	simCPU    time.Duration
	start     time.Time
}

func startUsage(hub *agentProcess, sims []*agentProcess) *usage {
	u := &usage{hub: []int{hub.cmd.Process.Pid}, start: time.Now()}
	for _, sim := range sims {
		u.sims = append(u.sims, sim.cmd.Process.Pid)
	}
	u.hubCPU, u.simCPU = cpuOf(u.hub), cpuOf(u.sims)
	return u
}

// percent is the CPU the hub and the simulators used since the start, in
// percent of one core (the machine has two: 200 % is all of it).
func (u *usage) percent() (hub, sims float64) {
	window := time.Since(u.start).Seconds()
	return 100 * (cpuOf(u.hub) - u.hubCPU).Seconds() / window, 100 * (cpuOf(u.sims) - u.simCPU).Seconds() / window
}

func cpuOf(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		total += procCPU(pid)
	}
	return total
}

// procCPU is a process's user and system time so far.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// BenchmarkFleetSimulator runs N simulated agents (test/bench/fleetsim:
// the agent's code from its NATS connection down to status reporting,
// with a recorder for a cluster) against the hub binary, each cluster
// running five applications, and measures: a commit to every agent
// reporting it applied; the hub (and its embedded NATS server) killed
// with SIGKILL and restarted with a commit waiting, to every agent
// reconnected and reporting it; steady-state CPU and memory of the hub
// process, and each agent's heartbeat and status traffic; and
// `flotilla app list`'s call at N × 5 applications.
//
// `make bench` runs N = 1,000; -fleetsim-agents 1000,5000,10000 runs the
// larger fleets (docs/benchmarks.md).
func BenchmarkFleetSimulator(b *testing.B) {
	for _, field := range strings.Split(*fleetsimAgents, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			b.Fatalf("-fleetsim-agents %q: %v", *fleetsimAgents, err)
		}
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			h := startSimHub(b, simApps)
			a := watchApplied(b, h)
			sims, addClusters, firstSync := h.startFleet(b, a, n, simApps)
			firstKeys := simKeys(n, 1)

			for b.Loop() {
				// Reported inside the loop: its start deletes what was
				// reported before it.
				reportNow(b, addClusters.Seconds(), "add-clusters-s")
				reportNow(b, firstSync.Seconds(), "first-sync-s")
				// A commit → every agent has reported it applied.
				h.commit(b, "v2")
				usage := startUsage(h.proc, sims)
				start := time.Now()
				h.webhook(b)
				profileSims(sims)
				d := latencies(start, a.wait(b, firstKeys, 2, 10*time.Minute))
				reportNow(b, float64(percentile(d, 0.5).Milliseconds()), "commit-p50-ms")
				reportNow(b, float64(percentile(d, 0.99).Milliseconds()), "commit-p99-ms")
				reportNow(b, float64(percentile(d, 1).Milliseconds()), "commit-max-ms")
				// What bounds it: how busy the machine's two cores were.
				hubCPU, simCPU := usage.percent()
				reportNow(b, hubCPU, "commit-hub-cpu-%")
				reportNow(b, simCPU, "commit-sim-cpu-%")

				// Steady state.
				time.Sleep(5 * time.Second)
				var msgs, bytes atomic.Int64
				sub, err := h.nc.Subscribe(">", func(m *nats.Msg) {
					if strings.HasPrefix(m.Subject, "$KV."+bus.ClustersBucket+".") || strings.HasPrefix(m.Subject, "$KV."+bus.StatusBucket+".") || strings.HasPrefix(m.Subject, "flotilla.events.") {
						msgs.Add(1)
						bytes.Add(int64(len(m.Data) + len(m.Subject)))
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				pid := h.proc.cmd.Process.Pid
				cpu0, t0 := procCPU(pid), time.Now()
				time.Sleep(30 * time.Second)
				cpu, window := procCPU(pid)-cpu0, time.Since(t0)
				_ = sub.Unsubscribe()
				reportNow(b, 100*cpu.Seconds()/window.Seconds(), "hub-cpu-%")
				reportNow(b, procStatusMiB(pid, "VmRSS"), "hub-rss-MiB")
				simRSS := 0.0
				for _, sim := range sims {
					simRSS += procStatusMiB(sim.cmd.Process.Pid, "VmRSS")
				}
				reportNow(b, simRSS/float64(n)*1024, "sim-KiB/agent")
				reportNow(b, float64(msgs.Load())/float64(n)/window.Seconds()*60, "agent-msgs/min")
				reportNow(b, float64(bytes.Load())/float64(n)/window.Seconds(), "agent-B/s")

				// The fleet's list, as `flotilla app list` asks it.
				start = time.Now()
				resp, err := h.client.ListApps(context.Background(), connect.NewRequest(&flotillav1.ListAppsRequest{}))
				if err != nil {
					b.Fatal(err)
				}
				reportNow(b, float64(time.Since(start).Milliseconds()), "app-list-ms")
				if got := len(resp.Msg.GetApps()); got != n*simApps {
					b.Fatalf("app list: %d applications, want %d", got, n*simApps)
				}

				// The hub and its NATS server killed; a commit lands while
				// they are away; every agent reconnects and catches up.
				_ = h.proc.cmd.Process.Signal(syscall.SIGKILL)
				_ = h.proc.cmd.Wait()
				h.commit(b, "v3")
				start = time.Now()
				h.start(b)
				usage = startUsage(h.proc, sims)
				profileSims(sims)
				// It serves once it follows the buckets, which takes
				// JetStream requests of its own: the reconnect storm
				// competes for the server's API queue.
				h.waitServing(b, 10*time.Minute)
				reportNow(b, time.Since(start).Seconds(), "restart-serving-s")
				a.watch(b, h)
				d = latencies(start, a.wait(b, firstKeys, 3, 10*time.Minute))
				reportNow(b, float64(percentile(d, 0.5).Milliseconds())/1000, "restart-caught-up-p50-s")
				reportNow(b, float64(percentile(d, 1).Milliseconds())/1000, "restart-caught-up-s")
				hubCPU, simCPU = usage.percent()
				reportNow(b, hubCPU, "restart-hub-cpu-%")
				reportNow(b, simCPU, "restart-sim-cpu-%")
			}
		})
	}
}
