// Command demo runs Flotilla end to end on one machine, on embedded
// defaults: a local Git repository with the example gitops-config, a hub
// with embedded NATS, two real Kubernetes API servers (production and
// staging) and an agent for each. It prints what was applied and how to
// roll out a change, then follows status until Ctrl-C stops everything.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flotilla-dev/flotilla/agent"
	"github.com/flotilla-dev/flotilla/hub"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/cli"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	work := filepath.Join(root, "bin", "demo")
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(os.TempDir(), "flotilla-demo.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, nil))

	step("Creating the gitops-config repository")
	bare := filepath.Join(work, "git", "gitops-config.git")
	checkout := filepath.Join(work, "gitops-config")
	if err := createRepo(filepath.Join(root, "test", "testdata", "gitops-config"), bare, checkout); err != nil {
		return err
	}

	step("Starting two Kubernetes API servers (production, staging)")
	clusters := map[string]string{}
	for _, name := range []string{"prod-eu", "staging-1"} {
		kubeconfig, stopCluster, err := startCluster(filepath.Join(root, "bin", "k8s"), filepath.Join(work, name+".kubeconfig"))
		if err != nil {
			return err
		}
		defer stopCluster()
		clusters[name] = kubeconfig
	}

	step("Starting the hub with embedded NATS")
	const token = "demo-operator-token"
	if err := os.Setenv("FLOTILLA_DEMO_TOKEN", token); err != nil {
		return err
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
	keyFile := filepath.Join(work, "hub.pub")
	if err := os.WriteFile(keyFile, h.PublicKey(), 0o644); err != nil {
		return err
	}

	step("Starting an agent per cluster")
	agentDone := make(chan error, 2)
	for name, labels := range map[string]map[string]string{"prod-eu": {"env": "production"}, "staging-1": {"env": "staging"}} {
		opts := agent.DefaultOptions()
		opts.Cluster, opts.Labels, opts.NATSURL, opts.HubPublicKey = name, labels, h.NATSURL(), keyFile
		opts.Kubeconfig, opts.CacheDir = clusters[name], filepath.Join(work, "cache-"+name)
		opts.MetricsAddr = "" // two agents in one process; a real agent serves :8080
		go func() { agentDone <- agent.Run(ctx, opts, log.With("component", "agent", "agent", name)) }()
	}

	nc, err := nats.Connect(h.NATSURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	b, err := bus.Open(ctx, nc)
	if err != nil {
		return err
	}
	step("Waiting for the first sync")
	want := []string{"prod-eu.api-service", "prod-eu.worker-service", "prod-eu.ml-inference", "prod-eu.root-app", "staging-1.api-service", "staging-1.worker-service"}
	if err := waitSynced(ctx, b, want); err != nil {
		return err
	}
	for _, key := range want {
		cluster, app, _ := bus.SplitKey(key)
		st, _ := b.GetStatus(ctx, cluster, app)
		fmt.Printf("\n%s / %s  revision %.8s  history %d  %s\n", cluster, app, st.GetRevision(), st.GetHistoryId(), st.GetMessage())
		for _, r := range st.GetResources() {
			fmt.Printf("    %-24s %-42s %s\n", r.GetKind(), r.GetNamespace()+"/"+r.GetName(), r.GetAction())
		}
	}

	// The user story's 2 am: a bad release ships, one command undoes it.
	flotilla := func(args ...string) error {
		fmt.Printf("\n$ flotilla %s\n", strings.Join(args, " "))
		cmd := cli.NewRoot(os.Stdout)
		cmd.SetArgs(append(args, "--hub", "http://"+ln.Addr().String(), "--token", token))
		return cmd.ExecuteContext(ctx)
	}
	fmt.Println()
	step("Shipping api-service 1.4.3 to production the way CI does (a commit), then rolling it back")
	if err := gitIn(checkout, "commit", "--quiet", "-m", "deploy: api-service 1.4.3", "--", bumpTag(checkout, "1.4.2", "1.4.3")); err != nil {
		return err
	}
	if err := gitIn(checkout, "push", "--quiet"); err != nil {
		return err
	}
	if err := waitHistory(ctx, b, "prod-eu", "api-service", 2); err != nil {
		return err
	}
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
	if err := flotilla("app", "get", "api-service"); err != nil {
		return err
	}
	kubectl := filepath.Join(root, "bin", "k8s", "kubectl")
	fmt.Printf(`
production is back on 1.4.2 and pinned there until the next commit to
api-service or an unpin. Ship a fixed release the way CI does, from another
shell; the commit releases the pin:

  cd %s
  sed -i 's/tag: "1.4.3"/tag: "1.4.4"/' environments/production/api-service-values.yaml
  git commit -qam "deploy: api-service 1.4.4" && git push -q

and watch it arrive in production within seconds:

  %s --kubeconfig %s -n production get rollout api-service -o jsonpath='{.spec.template.spec.containers[0].image}{"\n"}'

More of the operator CLI:

  export FLOTILLA_HUB=http://%s FLOTILLA_TOKEN=%s
  go run ./cmd/flotilla app history api-service
  go run ./cmd/flotilla app diff api-service
  go run ./cmd/flotilla app unpin api-service
  go run ./cmd/flotilla app rollback api-service --git     # the golden rule: revert in Git
  go run ./cmd/flotilla events --app api-service

Status changes are printed below; logs are in %s. Ctrl-C stops everything.
`, checkout, kubectl, clusters["prod-eu"], ln.Addr().String(), token, logFile.Name())

	if err := followStatus(ctx, nc); err != nil && ctx.Err() == nil {
		return err
	}
	step("Stopping")
	<-hubDone
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
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if st, err := b.GetStatus(ctx, cluster, app); err == nil && st.GetHistoryId() >= id && st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_RUNNING {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s/%s did not reach history %d within a minute", cluster, app, id)
}

// createRepo makes a bare repository holding the fixture and a checkout
// whose origin is it, as a platform team's clone would be.
func createRepo(fixture, bare, checkout string) error {
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
		{"remote", "add", "origin", bare}, {"push", "--quiet", "-u", "origin", "main"},
		{"config", "user.name", "Demo"}, {"config", "user.email", "demo@example.com"},
	} {
		if err := git(checkout, args...); err != nil {
			return err
		}
	}
	return nil
}

// startCluster runs a kube-apiserver and etcd and writes an admin kubeconfig.
func startCluster(bins, kubeconfigPath string) (string, func(), error) {
	env := &envtest.Environment{BinaryAssetsDirectory: bins, ControlPlaneStartTimeout: time.Minute}
	cfg, err := env.Start()
	if err != nil {
		return "", nil, fmt.Errorf("start API server (run `make test-bins`?): %w", err)
	}
	user, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		_ = env.Stop()
		return "", nil, err
	}
	data, err := user.KubeConfig()
	if err == nil {
		err = os.WriteFile(kubeconfigPath, data, 0o600)
	}
	if err != nil {
		_ = env.Stop()
		return "", nil, err
	}
	return kubeconfigPath, func() { _ = env.Stop() }, nil
}

func waitSynced(ctx context.Context, b *bus.Bus, keys []string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		done := 0
		for _, key := range keys {
			cluster, app, _ := bus.SplitKey(key)
			if st, err := b.GetStatus(ctx, cluster, app); err == nil && st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
				done++
			}
		}
		if done == len(keys) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("applications not synced within 2 minutes")
}

// followStatus prints every status change until ctx ends.
func followStatus(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, bus.StatusBucket)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			st := &flotillav1.AppStatus{}
			if proto.Unmarshal(e.Value(), st) != nil {
				continue
			}
			phase := strings.TrimPrefix(st.GetPhase().String(), "SYNC_PHASE_")
			health := strings.TrimPrefix(st.GetHealth().String(), "HEALTH_STATUS_")
			fmt.Printf("%s  %-10s %-15s history %-3d %-9s %-11s %s\n", time.Now().Format("15:04:05"), st.GetCluster(), st.GetApp(), st.GetHistoryId(), phase, health, st.GetMessage())
		}
	}
}
