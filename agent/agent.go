package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/agent/reconcile"
	"github.com/flotilla-dev/flotilla/agent/rollouts"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/clustercreds"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/signing"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Version is the agent's version, reported in its registration.
var Version = "dev"

// Run runs the agent on the cluster of opts.Kubeconfig until ctx ends.
func Run(ctx context.Context, opts Options, log *slog.Logger) error {
	if _, err := clustercreds.Read(opts.Credentials); err != nil {
		return fmt.Errorf("--credentials: %w", err)
	}
	cfg, err := kubeConfig(opts.Kubeconfig)
	if err != nil {
		return err
	}
	// The apply engine bounds its requests in flight (apply.Options); a
	// client-side rate limit on top (client-go's default is 5 QPS) would
	// make a 1,000-object first sync take minutes. Negative disables it.
	cfg.QPS = -1
	manager, err := apply.NewManager(cfg, apply.DefaultOptions())
	if err != nil {
		return err
	}
	// The API server and the hub may come up after the agent (or be down
	// for a while): wait for each rather than crash-loop.
	err = retry(ctx, log, "prepare the cluster", func() error {
		if err := ensureNamespace(ctx, manager, opts.Namespace); err != nil {
			return err
		}
		created, err := rollouts.EnsureCRDs(ctx, manager.Dynamic())
		if len(created) > 0 {
			log.Info("installed or updated Argo Rollouts CRDs", "crds", created)
		}
		return err
	})
	if err != nil {
		return err
	}
	var kubeVersion string
	err = retry(ctx, log, "read the cluster's version", func() error {
		kubeVersion, err = manager.ServerVersion()
		return err
	})
	if err != nil {
		return err
	}
	serverURLs := opts.ServerURLs
	if opts.ServerURLFromKubeconfig {
		serverURLs = append(serverURLs, cfg.Host)
	}
	return Serve(ctx, opts, Kube{
		Cluster: manager, Inventories: inventory.NewStore(manager.Dynamic(), opts.Namespace), Rollouts: rollouts.Summarizer{Client: manager.Dynamic()},
		WaveAnalyses: rollouts.NewWaveAnalyses(manager.Dynamic()), Dynamic: manager.Dynamic(), Version: kubeVersion, ServerURLs: serverURLs,
	}, log)
}

// Kube is what the agent uses of its cluster. Run gives it the cluster of
// its kubeconfig; a fleet simulator (test/bench/fleetsim) gives it a
// recorder, to run the rest of the agent many times in one process.
type Kube struct {
	Cluster      reconcile.Cluster
	Inventories  reconcile.Inventories
	Rollouts     reconcile.Rollouts
	WaveAnalyses reconcile.WaveAnalyses
	// Dynamic carries out rollout commands and runs the rollouts
	// controller; without it, both are off.
	Dynamic dynamic.Interface
	// Version is the cluster's Kubernetes version; ServerURLs the API
	// server URLs it registers (destination.server).
	Version    string
	ServerURLs []string
}

// Serve runs the agent on kube from its NATS connection on, until ctx
// ends: it connects as the cluster of opts.Credentials, registers and
// heartbeats, serves the hub's commands, and follows its desired states,
// verifying each before the syncer takes it.
func Serve(ctx context.Context, opts Options, kube Kube, log *slog.Logger) error {
	bundle, err := clustercreds.Read(opts.Credentials)
	if err != nil {
		return fmt.Errorf("--credentials: %w", err)
	}
	cluster := bundle.GetCluster()
	if !appspec.ValidName(cluster) {
		return fmt.Errorf("--credentials %s: cluster %q must be a DNS label", opts.Credentials, cluster)
	}
	keys, err := signing.ParsePublicKeys(bundle.GetHubKeys())
	if err != nil {
		return fmt.Errorf("--credentials %s: %s: %w", opts.Credentials, clustercreds.HubKeysFile, err)
	}
	// The agent applies only what a key of the hub's key set signed.
	verifier := signing.NewVerifier(keys...)
	if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
		return err
	}

	natsURL := cmp.Or(opts.NATSURL, bundle.GetNatsUrl())
	nc, err := connectNATS(natsURL, cluster, bundle, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	b, err := bus.Open(nc)
	if err != nil {
		return err
	}
	// What NATS misses while it is away is kept and sent when it is back.
	outbox := bus.NewOutbox(b, cluster, bus.DefaultOutboxEvents)
	go outbox.Run(ctx, time.Second, func(err error) {
		statuses, events := outbox.Pending()
		if err != nil {
			log.Warn("sending the kept statuses and events failed; retrying every second", "error", err, "statuses", statuses, "events", events)
			return
		}
		log.Info("sent the kept statuses and events")
	})
	reporter := &busReporter{outbox: outbox, log: log}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Whether the agent reached the hub: `helm test` of the agent's chart
	// waits for it.
	registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flotilla_agent_nats_connected", Help: "1 while the agent is connected to the hub's NATS with its cluster's credentials, else 0.",
	}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	}))
	rolloutsController := opts.RolloutsController && kube.Dynamic != nil
	var unsupported map[schema.GroupKind]string
	if rolloutsController {
		unsupported = rollouts.UnsupportedKinds
	}
	syncer := reconcile.New(reconcile.Options{
		Cluster: cluster, KubeVersion: kube.Version, Unsupported: unsupported, CacheDir: opts.CacheDir, Limits: artifact.DefaultLimits(),
		HealthInterval: time.Second, HealthTimeout: opts.HealthTimeout, ResyncInterval: opts.ResyncInterval, Metrics: reconcile.NewMetrics(registry),
	}, log, reconcile.Dependencies{
		Cluster: kube.Cluster, Inventories: kube.Inventories, Rollouts: kube.Rollouts,
		Artifacts: b, Reporter: reporter, WaveAnalyses: kube.WaveAnalyses,
	})
	capabilities := []string{"helm", "kustomize", "directory"}
	if rolloutsController {
		controllerOpts := rollouts.DefaultOptions()
		controllerOpts.OnChange, controllerOpts.TraceParent = syncer.RolloutChanged, syncer.TraceParent
		controller := rollouts.NewController(kube.Dynamic, controllerOpts, log.With("component", "rollouts"))
		go func() {
			if err := controller.Run(ctx); err != nil {
				log.Error("rollouts controller stopped", "error", err)
			}
		}()
		capabilities = append(capabilities, "rollouts")
	}

	reg := &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: cluster, AgentVersion: Version,
		KubernetesVersion: kube.Version, Capabilities: capabilities, StartedAt: timestamppb.Now(), ServerUrls: kube.ServerURLs}
	go heartbeat(ctx, nc, b, reg, opts.Heartbeat, log)
	if opts.MetricsAddr != "" {
		if err := serveMetrics(ctx, opts.MetricsAddr, registry, opts.Pprof, log); err != nil {
			return err
		}
	}
	if err := b.ServeCommands(ctx, cluster, commandHandler(cluster, verifier, syncer, kube.Dynamic, log)); err != nil {
		return err
	}
	log.Info("agent running", "cluster", cluster, "nats", natsURL, "kubernetes", kube.Version)

	return b.WatchDesired(ctx, cluster, func(e bus.DesiredEntry) bool {
		if e.Cluster != cluster {
			return false
		}
		msgCtx := e.Context(ctx)
		ds, err := verifier.Verify(e.State)
		if err == nil && (ds.GetCluster() != e.Cluster || ds.GetApp() != e.App) {
			err = fmt.Errorf("signed for %s/%s but stored under %s/%s", ds.GetCluster(), ds.GetApp(), e.Cluster, e.App)
		}
		if err != nil {
			log.Error("desired state refused", "cluster", e.Cluster, "app", e.App, "error", err)
			reporter.refused(msgCtx, e.Cluster, e.App, err)
			return false
		}
		if e.Revision != 0 && ds.GetHistoryId() < syncer.Recorded(msgCtx, e.App) {
			// A catch-up's entry older than one this agent took: an old
			// entry put back last. The catch-up looks further back in the
			// key's history for the newest; a change notification goes to
			// the syncer, which refuses and reports it.
			return false
		}
		syncer.Offer(ctx, reconcile.Desired{State: ds, Trace: trace.SpanContextFromContext(msgCtx)})
		return true
	}, func(err error, retryIn time.Duration) {
		if err != nil {
			log.Warn("catch-up with the desired states failed; retrying", "error", err, "retry_in", retryIn.Round(time.Millisecond).String())
			return
		}
		log.Info("caught up with the desired states")
	})
}

// connectNATS connects as the cluster's own NATS user, over TLS verified
// with the bundle's CA. It retries for ever: a server that is down, or
// that refuses the credentials (a revoked cluster), is retried with a
// backoff up to 30 s and logged, never a crash.
func connectNATS(url, cluster string, bundle *flotillav1.ClusterCredentials, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("flotilla-agent-" + cluster), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		// nats.go gives up after two authentication errors in a row; a
		// revoked cluster keeps trying, slowly, until it is re-added.
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(reconnectDelay),
		// A fleet reconnecting at once queues its TLS handshakes on the
		// server; one given up at nats.go's default of 2 s is work the
		// server did for nothing, and is done again.
		nats.Timeout(connectTimeout),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAuthExpired) {
				log.Error("NATS refuses this cluster's credentials: the hub's admin (flotilla cluster list) or the NATS operator may have revoked them; retrying with backoff", "cluster", cluster, "error", err)
				return
			}
			log.Warn("NATS refused a request", "error", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if len(bundle.GetNatsCreds()) > 0 {
		clusterOpts, err := natsauth.ClusterOptions(cluster, bundle.GetNatsCreds())
		if err != nil {
			return nil, fmt.Errorf("--credentials: %s: %w", clustercreds.NATSCredsFile, err)
		}
		opts = append(opts, clusterOpts...)
	}
	if len(bundle.GetCa()) > 0 || strings.HasPrefix(url, "tls://") {
		tlsConfig, err := tlsca.ClientConfig(bundle.GetCa())
		if err != nil {
			return nil, fmt.Errorf("--credentials: %s: %w", clustercreds.CAFile, err)
		}
		opts = append(opts, nats.Secure(tlsConfig))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	return nc, nil
}

// connectTimeout bounds one attempt to connect, TLS handshake included.
const connectTimeout = 10 * time.Second

// reconnectDelay is the wait before reconnect attempt n: exponential up
// to 30 s, each drawn at random from its upper half, so that a fleet the
// server dropped at once (a NATS restart) comes back spread out rather
// than in waves.
func reconnectDelay(attempts int) time.Duration {
	ceiling := min(time.Second<<min(attempts, 5), 30*time.Second)
	return ceiling/2 + rand.N(ceiling/2)
}

// retry runs fn until it succeeds or ctx ends, backing off exponentially
// up to 30 s between attempts and logging each failure.
func retry(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	policy := backoff.NewExponentialBackOff()
	policy.InitialInterval, policy.MaxInterval, policy.MaxElapsedTime = time.Second, 30*time.Second, 0
	return backoff.RetryNotify(fn, backoff.WithContext(policy, ctx), func(err error, next time.Duration) {
		log.Warn("waiting to "+what, "error", err, "retry_in", next.Round(time.Millisecond).String())
	})
}

// serveMetrics serves /metrics and /healthz (and with withPprof the Go
// profiles under /debug/pprof/) until ctx ends.
func serveMetrics(ctx context.Context, addr string, registry *prometheus.Registry, withPprof bool, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "error", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return nil
}

func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (set --kubeconfig outside a cluster): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// ensureNamespace creates the namespace of the agent's own state.
func ensureNamespace(ctx context.Context, manager *apply.Manager, name string) error {
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
	if _, err := manager.ApplyAll(ctx, []*unstructured.Unstructured{ns}); err != nil {
		return fmt.Errorf("agent namespace %s: %w", name, err)
	}
	return nil
}

// heartbeat registers the cluster over nc now, at every interval, and at
// once after every reconnect: a hub holds the desired states of a cluster
// it has not heard from since it started.
func heartbeat(ctx context.Context, nc *nats.Conn, b *bus.Conn, reg *flotillav1.ClusterRegistration, every time.Duration, log *slog.Logger) {
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		reg.HeartbeatAt = timestamppb.Now()
		if err := b.Register(ctx, reg); err != nil && ctx.Err() == nil {
			log.Error("heartbeat", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-reconnected:
			t.Reset(every)
		}
	}
}

// busReporter sends status and events over NATS, through an outbox that
// keeps them while NATS is away.
type busReporter struct {
	outbox *bus.Outbox
	log    *slog.Logger
}

func (r *busReporter) PutStatus(ctx context.Context, st *flotillav1.AppStatus) error {
	return r.outbox.PutStatus(ctx, st)
}

func (r *busReporter) Event(ctx context.Context, ev *flotillav1.Event) {
	if err := r.outbox.AppendEvent(ctx, ev); err != nil {
		r.log.Warn("append event", "error", err)
	}
}

func (r *busReporter) LastStatus(ctx context.Context, cluster, app string) (*flotillav1.AppStatus, error) {
	return r.outbox.GetStatus(ctx, cluster, app)
}

// refused reports a desired state that failed verification.
func (r *busReporter) refused(ctx context.Context, cluster, app string, err error) {
	st := &flotillav1.AppStatus{SchemaVersion: 1, Cluster: cluster, App: app, Phase: flotillav1.SyncPhase_SYNC_PHASE_ERROR,
		SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_UNKNOWN, Health: flotillav1.HealthStatus_HEALTH_STATUS_UNKNOWN,
		Message: "desired state refused: " + err.Error(), ObservedAt: timestamppb.Now()}
	_ = r.PutStatus(ctx, st)
	r.Event(ctx, &flotillav1.Event{SchemaVersion: 1, Time: timestamppb.Now(), Cluster: cluster, App: app, Type: flotillav1.EventType_EVENT_TYPE_WARNING,
		Reason: flotillav1.ReasonDesiredStateRefused, Message: st.Message, Source: "agent", Actor: "agent/" + cluster})
}
