// Command demo runs Flotilla end to end on one machine, on embedded
// defaults: a local Git repository with the example gitops-config, a hub
// with embedded NATS, two real Kubernetes clusters (production and staging:
// API server, controller-manager, scheduler and kwok's fake nodes, so pods
// run) and an agent for each. With Debian's Prometheus installed, the
// canary's analysis queries it about simulated traffic. It plays the user
// story's bad release and rollback, prints how to ship a fix, then follows
// status until Ctrl-C stops everything: every process it started ends, and
// its temporary files are removed, however slow the stop (supervise.go).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent"
	"github.com/flotilla-dev/flotilla/hub"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/cli"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// hubBus connects to the hub's NATS with the hub's own permissions, as an
// operator on the hub's machine can with the operator keys in its data
// directory, to follow the fleet's statuses.
func hubBus(ctx context.Context, dataDir string, h *hub.Hub) (*bus.Bus, error) {
	authority, err := natsauth.LoadOrCreate(filepath.Join(dataDir, "trust"))
	if err != nil {
		return nil, err
	}
	creds, _, err := authority.User("demo", natsauth.HubPermissions())
	if err != nil {
		return nil, err
	}
	user, err := natsauth.Credentials(creds)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(h.NATSURL(), user, nats.RootCAs(h.CAFile()))
	if err != nil {
		return nil, err
	}
	return bus.Bind(ctx, nc)
}

func main() {
	if os.Getenv(workerEnv) == "" {
		os.Exit(supervise())
	}
	ctx, stop := workerContext()
	defer stop()
	// Ctrl-C during a step ends the demo as it does at the end: cleanly.
	if err := run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// workerContext ends at the first SIGINT, SIGTERM or SIGHUP, or when the
// supervisor closes the control pipe or ends. The signals stay caught
// after: the supervisor decides when stopping takes too long, and kills.
func workerContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGPIPE { // a closed stdout stops nothing
				cancel()
			}
		}
	}()
	if fd, err := strconv.Atoi(os.Getenv(workerEnv)); err == nil {
		go func() {
			_, _ = io.Copy(io.Discard, os.NewFile(uintptr(fd), "supervisor"))
			cancel()
		}()
	}
	return ctx, cancel
}

// awaitStop waits up to 20 s for done, after the context of what it
// reports on was cancelled, so a part that hangs cannot hold up the stop of
// the clusters.
func awaitStop[T any](log *slog.Logger, what string, done <-chan T) {
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		log.Warn("not stopped after 20 s; stopping the clusters anyway", "part", what)
	}
}

func run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	// The supervisor emptied bin/demo and made its tmp.
	work, tmp := demoDirs(root)
	logPath := os.Getenv(logEnv)
	if logPath == "" {
		logPath = filepath.Join(os.TempDir(), "flotilla-demo.log")
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, nil))
	env := &environment{ctx: ctx, dir: tmp, log: log}
	defer env.stop()
	defer env.recoverFatal(&err)

	// The simulated users of api-service in production, and the
	// Prometheus that scrapes them, when it is installed.
	var prometheus *testenv.Prometheus
	traffic := testenv.StartTraffic(env)
	traffic.Serve("api-service", "stable", goodErrorRatio)
	if _, err := exec.LookPath("prometheus"); err == nil {
		step("Starting Prometheus, scraping simulated api-service traffic")
		prometheus = testenv.StartPrometheus(env, traffic.Target)
	}

	step("Creating the gitops-config repository")
	bare := filepath.Join(work, "git", "gitops-config.git")
	checkout := filepath.Join(work, "gitops-config")
	if err := createRepo(filepath.Join(root, "test", "testdata", "gitops-config"), bare, checkout, prometheus); err != nil {
		return err
	}

	step("Starting two Kubernetes clusters (production, staging) with fake nodes")
	clusters := map[string]*testenv.Cluster{}
	for _, name := range []string{"prod-eu", "staging-1"} {
		clusters[name] = testenv.StartCluster(env, testenv.ClusterOptions{Name: name, Workloads: true, Nodes: 2})
	}

	step("Starting the hub with embedded NATS (operator mode, TLS from the hub's private CA)")
	const token, adminToken = "demo-operator-token", "demo-admin-token"
	for env, value := range map[string]string{"FLOTILLA_DEMO_TOKEN": token, "FLOTILLA_DEMO_ADMIN_TOKEN": adminToken} {
		if err := os.Setenv(env, value); err != nil {
			return err
		}
	}
	cfg, err := config.Parse("demo", []byte(fmt.Sprintf(`
dataDir: %s
listen: 127.0.0.1:0
nats: {embeddedListen: "127.0.0.1:-1"}
repositories:
  - {url: https://github.com/your-org/gitops-config, fetchURL: "file://%s", pollInterval: 2s}
roots:
  - {name: production, repo: https://github.com/your-org/gitops-config, path: apps, clusters: env=production}
api:
  tokens:
    - {name: demo, role: operator, tokenEnv: FLOTILLA_DEMO_TOKEN}
    - {name: demo-admin, role: admin, tokenEnv: FLOTILLA_DEMO_ADMIN_TOKEN}
`, filepath.Join(work, "hub"), bare)))
	if err != nil {
		return err
	}
	h, err := hub.New(ctx, cfg, log.With("component", "hub"))
	if err != nil {
		return err
	}
	defer h.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Serve(ctx, ln) }()
	defer func() { cancel(); awaitStop(log, "hub", hubDone) }()
	hubURL := "https://" + ln.Addr().String()
	// The CLI trusts the hub's private CA, as an operator's would.
	if err := os.Setenv("FLOTILLA_CA_FILE", h.CAFile()); err != nil {
		return err
	}
	flotillaAs := func(token string, args ...string) error {
		fmt.Printf("\n$ flotilla %s\n", strings.Join(args, " "))
		cmd := cli.NewRoot(os.Stdout)
		cmd.SetArgs(append(args, "--hub", hubURL, "--token", token))
		return cmd.ExecuteContext(ctx)
	}

	step("Adding the clusters: each gets NATS credentials that reach only its own desired state")
	for _, c := range []struct{ name, labels string }{{"prod-eu", "env=production"}, {"staging-1", "env=staging"}} {
		if err := flotillaAs(adminToken, "cluster", "add", c.name, "--labels", c.labels, "--out", filepath.Join(work, "credentials-"+c.name)); err != nil {
			return err
		}
	}

	step("Starting an agent per cluster")
	var agents sync.WaitGroup
	for _, name := range []string{"prod-eu", "staging-1"} {
		opts := agent.DefaultOptions()
		opts.Credentials = filepath.Join(work, "credentials-"+name)
		opts.Kubeconfig, opts.CacheDir = clusters[name].Kubeconfig, filepath.Join(work, "cache-"+name)
		opts.MetricsAddr = "" // two agents in one process; a real agent serves :8080
		agents.Go(func() { _ = agent.Run(ctx, opts, log.With("component", "agent", "agent", name)) })
	}
	agentsDone := make(chan struct{})
	go func() { agents.Wait(); close(agentsDone) }()
	defer func() { cancel(); awaitStop(log, "agents", agentsDone) }()
	go simulateUsers(ctx, clusters["prod-eu"], traffic)

	b, err := hubBus(ctx, filepath.Join(work, "hub"), h)
	if err != nil {
		return err
	}
	step("Waiting for the first sync")
	want := []string{"prod-eu.api-service", "prod-eu.worker-service", "prod-eu.ml-inference", "prod-eu.root-app", "staging-1.api-service", "staging-1.worker-service"}
	if err := waitSynced(ctx, b, want); err != nil {
		return err
	}
	for _, key := range want {
		cluster, app, _ := appkey.Split(key)
		st, _ := b.GetStatus(ctx, cluster, app)
		fmt.Printf("\n%s / %s  revision %.8s  history %d  %s\n", cluster, app, st.GetRevision(), st.GetHistoryId(), st.GetMessage())
		for _, r := range st.GetResources() {
			fmt.Printf("    %-24s %-42s %s\n", r.GetKind(), r.GetNamespace()+"/"+r.GetName(), r.GetAction())
		}
	}
	fmt.Println()
	step("Waiting for api-service's pods in production (an HPA scales its Rollout to 10)")
	if err := waitAvailable(ctx, clusters["prod-eu"], 10); err != nil {
		return err
	}
	first, err := waitRollout(ctx, b, 1, "is Healthy", func(ro *flotillav1.RolloutStatus) bool { return ro.GetPhase() == "Healthy" })
	if err != nil {
		return err
	}
	stable := first.GetStableHash() // 1.4.2's pods

	// The user story's 2 am: a bad release ships, one command undoes it.
	flotilla := func(args ...string) error { return flotillaAs(token, args...) }
	if prometheus != nil {
		step("Shipping api-service 1.4.3 to production the way CI does (a commit); 1.4.3 has a bug: 5 % of its requests fail")
	} else {
		step("Shipping api-service 1.4.3 to production the way CI does (a commit)")
	}
	if err := gitIn(checkout, "commit", "--quiet", "-m", "deploy: api-service 1.4.3", "--", bumpTag(checkout, "1.4.2", "1.4.3")); err != nil {
		return err
	}
	if err := gitIn(checkout, "push", "--quiet"); err != nil {
		return err
	}
	// With Prometheus the analysis catches the bug and the canary goes back
	// to stable by itself; without, the canary runs its steps to the end.
	outcome, done := "is promoted", func(ro *flotillav1.RolloutStatus) bool {
		return ro.GetPhase() == "Healthy" && ro.GetStableHash() != stable
	}
	if prometheus != nil {
		outcome, done = "is aborted", func(ro *flotillav1.RolloutStatus) bool { return ro.GetPhase() == "Degraded" }
	}
	ro, err := waitRollout(ctx, b, 2, outcome, done)
	if err != nil {
		return err
	}
	fmt.Printf("\napi-service's canary in production %s: %s\n", outcome, strings.TrimSuffix(ro.GetPhase()+": "+ro.GetMessage(), ": "))
	for _, args := range [][]string{
		{"app", "list", "--cluster", "prod-eu"},
		{"app", "history", "api-service", "--cluster", "prod-eu"},
		{"app", "rollback", "api-service", "--revision", "1", "--cluster", "prod-eu"},
	} {
		if err := flotilla(args...); err != nil {
			return err
		}
	}
	if err := waitHistory(ctx, b, "prod-eu", "api-service", 3); err != nil {
		return err
	}
	if _, err := waitRollout(ctx, b, 3, "runs 1.4.2", func(ro *flotillav1.RolloutStatus) bool {
		return ro.GetPhase() == "Healthy" && ro.GetStableHash() == stable
	}); err != nil {
		return err
	}
	if err := flotilla("app", "get", "api-service"); err != nil {
		return err
	}
	// `make demo` builds only what it starts; kubectl comes with `make
	// test-bins`, or is the user's own.
	kubectl := filepath.Join(testenv.BinDir(env), "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		kubectl = "kubectl"
	}
	fmt.Printf(`
production is back on 1.4.2 and pinned there until the next commit to
api-service or an unpin. Ship a fixed release the way CI does, from another
shell; the commit releases the pin:

  cd %s
  sed -i 's/tag: "1.4.3"/tag: "1.4.4"/' environments/production/api-service-values.yaml
  git commit -qam "deploy: api-service 1.4.4" && git push -q

and watch its canary go 10 %% → analysis → 50 %% → 100 %% in about a minute:

  export FLOTILLA_HUB=https://%s FLOTILLA_TOKEN=%s FLOTILLA_CA_FILE=%s
  watch go run ./cmd/flotilla app list --cluster prod-eu
  %s --kubeconfig %s -n production get rollout,replicasets,pods

The dashboard shows the fleet live, with the history table to roll back
from: open https://%s/ and sign in with the token %s. The hub's
certificate is from its own CA (%s): import it into your browser,
or accept the browser's warning once.

More of the operator CLI:

  go run ./cmd/flotilla app get api-service          # the canary's measurements
  go run ./cmd/flotilla rollout promote api-service  # skip a pause
  go run ./cmd/flotilla app diff api-service
  go run ./cmd/flotilla app rollback api-service --git     # the golden rule: revert in Git
  go run ./cmd/flotilla events --app api-service

Status changes are printed below; logs are in %s. Ctrl-C stops everything.
`, checkout, ln.Addr().String(), token, h.CAFile(), kubectl, clusters["prod-eu"].Kubeconfig, ln.Addr().String(), token, h.CAFile(), logFile.Name())

	if err := followStatus(ctx, b); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func step(msg string) { fmt.Printf("==> %s\n", msg) }

// gitIn runs git in dir.
func gitIn(dir string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// bumpTag replaces the production api-service image tag and returns the
// file it changed.
func bumpTag(checkout, from, to string) string {
	const file = "environments/production/api-service-values.yaml"
	path := filepath.Join(checkout, file)
	data, err := os.ReadFile(path)
	if err == nil {
		err = os.WriteFile(path, []byte(strings.Replace(string(data), `tag: "`+from+`"`, `tag: "`+to+`"`, 1)), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
	}
	return file
}

// waitHistory waits until the agent reports history id of (cluster, app).
func waitHistory(ctx context.Context, b *bus.Bus, cluster, app string, id uint64) error {
	return poll(ctx, time.Minute, func() error {
		if st, err := b.GetStatus(ctx, cluster, app); err != nil || st.GetHistoryId() < id || st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_RUNNING {
			return fmt.Errorf("%s/%s did not reach history %d within a minute", cluster, app, id)
		}
		return nil
	})
}

// waitRollout waits until production's api-service Rollout, at history id
// or later, is as want says (what, for the error).
func waitRollout(ctx context.Context, b *bus.Bus, id uint64, what string, want func(*flotillav1.RolloutStatus) bool) (*flotillav1.RolloutStatus, error) {
	var ro *flotillav1.RolloutStatus
	err := poll(ctx, 3*time.Minute, func() error {
		st, err := b.GetStatus(ctx, "prod-eu", "api-service")
		if err != nil {
			return err
		}
		for _, r := range st.GetRollouts() {
			if r.GetName() == "api-service" && st.GetHistoryId() >= id && want(r) {
				ro = r
				return nil
			}
		}
		return fmt.Errorf("production's api-service rollout %s: not within 3 minutes (history %d: %v)", what, st.GetHistoryId(), st.GetRollouts())
	})
	return ro, err
}

// waitAvailable waits until production's api-service Rollout has
// replicas available pods.
func waitAvailable(ctx context.Context, prod *testenv.Cluster, replicas int64) error {
	return poll(ctx, 3*time.Minute, func() error {
		ro, err := prod.Dynamic.Resource(rollouts).Namespace("production").Get(ctx, "api-service", metav1.GetOptions{})
		if err != nil {
			return err
		}
		available, _, _ := unstructured.NestedInt64(ro.Object, "status", "availableReplicas")
		if available != replicas {
			return fmt.Errorf("production's api-service has %d of %d pods available after 3 minutes", available, replicas)
		}
		return nil
	})
}

// poll runs check every 200 ms until it succeeds, ctx ends or timeout
// passes; it returns check's last error.
func poll(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// fastCanary makes production's api-service canary play in about a
// minute: the user story's steps with 10 s pauses and, with Prometheus,
// its analysis every 5 s over a 30 s window; without, no analysis step.
func fastCanary(prometheus *testenv.Prometheus) string {
	const intro = `rollout:
  enabled: true
  # make demo: the user story's canary, its pauses shortened to play in
  # about a minute.
  steps:
    - setWeight: 10
    - pause: {duration: 10s}
`
	if prometheus == nil {
		return intro + `    # Prometheus is not installed (apt-get install prometheus): no analysis step.
    - setWeight: 50
    - pause: {duration: 10s}
    - setWeight: 100
`
	}
	return intro + fmt.Sprintf(`    - analysis:
        templates:
          - templateName: error-rate-check
    - setWeight: 50
    - pause: {duration: 10s}
    - setWeight: 100
analysis:
  prometheusAddress: %s
  interval: 5s
  count: 4
  failureLimit: 1
  window: 30s
`, prometheus.URL)
}

// createRepo makes a bare repository holding the fixture and a checkout
// whose origin is it, as a platform team's clone would be; a second commit
// speeds up the canary for the demo.
func createRepo(fixture, bare, checkout string, prometheus *testenv.Prometheus) error {
	git := func(dir string, args ...string) error {
		cmd := exec.Command("git", append([]string{"-c", "user.name=Demo", "-c", "user.email=demo@example.com"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(bare), 0o755); err != nil {
		return err
	}
	if err := git("", "init", "--quiet", "--bare", "--initial-branch=main", bare); err != nil {
		return err
	}
	if err := os.CopyFS(checkout, os.DirFS(fixture)); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=main"}, {"add", "."}, {"commit", "--quiet", "-m", "initial import"},
	} {
		if err := git(checkout, args...); err != nil {
			return err
		}
	}
	values := filepath.Join(checkout, "environments", "production", "api-service-values.yaml")
	data, err := os.ReadFile(values)
	if err != nil {
		return err
	}
	const enabled = "rollout:\n  enabled: true\n"
	if !strings.Contains(string(data), enabled) {
		return fmt.Errorf("%s: no %q to speed up", values, enabled)
	}
	if err := os.WriteFile(values, []byte(strings.Replace(string(data), enabled, fastCanary(prometheus), 1)), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"commit", "--quiet", "-am", "demo: a canary that plays in a minute"},
		{"remote", "add", "origin", bare}, {"push", "--quiet", "-u", "origin", "main"},
		{"config", "user.name", "Demo"}, {"config", "user.email", "demo@example.com"},
	} {
		if err := git(checkout, args...); err != nil {
			return err
		}
	}
	return nil
}

func waitSynced(ctx context.Context, b *bus.Bus, keys []string) error {
	return poll(ctx, 2*time.Minute, func() error {
		for _, key := range keys {
			cluster, app, _ := appkey.Split(key)
			if st, err := b.GetStatus(ctx, cluster, app); err != nil || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
				return fmt.Errorf("%s/%s not synced within 2 minutes: %s", cluster, app, st.GetMessage())
			}
		}
		return nil
	})
}

// followStatus prints every status change until ctx ends.
func followStatus(ctx context.Context, b *bus.Bus) error {
	// Only changes: the statuses the bucket holds now were printed.
	var current atomic.Bool
	initial, err := b.WatchStatuses(ctx, func(_ string, st *flotillav1.AppStatus) {
		if !current.Load() {
			return
		}
		phase := strings.TrimPrefix(st.GetPhase().String(), "SYNC_PHASE_")
		health := strings.TrimPrefix(st.GetHealth().String(), "HEALTH_STATUS_")
		fmt.Printf("%s  %-10s %-15s history %-3d %-9s %-11s %s\n", time.Now().Format("15:04:05"), st.GetCluster(), st.GetApp(), st.GetHistoryId(), phase, health, st.GetMessage())
		for _, ro := range st.GetRollouts() {
			fmt.Printf("          rollout %s: %s\n", ro.GetName(), ro.Summary())
		}
	})
	if err != nil {
		return err
	}
	select {
	case <-initial:
		current.Store(true)
	case <-ctx.Done():
	}
	<-ctx.Done()
	return nil
}
