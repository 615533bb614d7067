package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/charts"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/hub/dashboard"
	"github.com/flotilla-dev/flotilla/hub/discovery"
	"github.com/flotilla-dev/flotilla/hub/fleet"
	"github.com/flotilla-dev/flotilla/hub/gitrepo"
	"github.com/flotilla-dev/flotilla/hub/leader"
	"github.com/flotilla-dev/flotilla/hub/publish"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

var tracer = otel.Tracer("github.com/flotilla-dev/flotilla/hub")

// Hub is a running hub.
type Hub struct {
	cfg     *config.Config
	log     *slog.Logger
	natsSrv *server.Server
	// authority signs the NATS users of the embedded server; nil with an
	// external one.
	authority *natsauth.Authority
	// natsURL is where agents connect, for their bundles.
	natsURL string
	// apiTLS is the API listener's certificate; nil serves plaintext.
	apiTLS    *tls.Config
	nc        *nats.Conn
	bus       fleetBus
	signer    *signing.Signer
	publisher *publish.Publisher
	// elector decides which replica leads: only the leader polls Git and
	// publishes.
	elector *leader.Elector
	// ready is closed once the hub can serve: it led its first pass, or
	// another replica leads.
	ready     chan struct{}
	readyOnce sync.Once
	roots     []discovery.Root
	repos     []*watchedRepo
	// charts reads charts from Helm repositories and OCI registries.
	charts *charts.Fetcher
	// renders keeps the renders of sources that did not change.
	renders *discovery.RenderCache
	// usesCharts is set while the last discovery found an application
	// with a chart from a repository: the hub then reconciles every
	// charts.refreshInterval, so a version range sees a version published
	// upstream without a commit, as Argo CD's reconciliation does.
	usesCharts atomic.Bool
	secret     string
	metrics    *metrics
	tokens     []api.Token

	// trigger asks the reconcile loop for a pass; it carries the span that
	// caused it so the pass continues that trace.
	trigger chan trace.SpanContext
	// reconcileNow asks for a pass and waits for it (operator calls).
	reconcileNow chan reconcileRequest
	// fleet runs the fleet rollouts; fleetWake asks the reconcile loop to
	// move them on (a status arrived, an operator promoted), and
	// last is the last pass, which a wave is published from.
	fleet     *fleet.Controller
	fleetWake chan struct{}
	last      *pass

	mu       sync.Mutex
	clusters map[string]*flotillav1.ClusterRegistration
	// identities are the clusters the hub issued credentials to.
	identities map[string]bus.Identity
	// statuses mirrors the status bucket once statusesLoaded is closed,
	// so the API reads the fleet's statuses from memory.
	statuses map[string]*flotillav1.AppStatus
	// ignoredFields are the warnings last reported per application.
	ignoredFields  map[string]string
	statusesLoaded <-chan struct{}
	// reported holds the last error reported per subject, so a failure is
	// reported once, not at every poll.
	reported map[string]string
}

type watchedRepo struct {
	mirror   *gitrepo.Mirror
	interval time.Duration
	pollNow  chan struct{}
}

// New starts what the hub needs before it can run: NATS, the buckets, the
// signing key and the Git mirrors.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *Hub, err error) {
	// h is not the named result: a failed start returns nil, and the
	// cleanup below must close what h opened, not the nil it returns.
	h := &Hub{cfg: cfg, log: log, ready: make(chan struct{}), trigger: make(chan trace.SpanContext, 1), reconcileNow: make(chan reconcileRequest), fleetWake: make(chan struct{}, 1), metrics: newMetrics(),
		clusters: map[string]*flotillav1.ClusterRegistration{}, identities: map[string]bus.Identity{}, reported: map[string]string{}, statuses: map[string]*flotillav1.AppStatus{}, ignoredFields: map[string]string{}}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if h.secret, err = cfg.Webhook.Secret(); err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	for _, t := range cfg.API.Tokens {
		value, err := t.Value()
		if err != nil {
			return nil, fmt.Errorf("api token %s: %w", t.Name, err)
		}
		role, err := api.ParseRole(t.Role)
		if err != nil {
			return nil, fmt.Errorf("api token %s: %w", t.Name, err)
		}
		h.tokens = append(h.tokens, api.Token{Name: t.Name, Value: value, Role: role})
	}
	clustered := cfg.NATS.Cluster.Listen != ""
	if clustered {
		if err := requireShared(cfg.DataDir, cfg.Replica.Name, cfg.NATS.TLS.CertFile == ""); err != nil {
			return nil, err
		}
	}
	// Files first: once the NATS server listens, a fleet reconnecting at
	// once can hold every descriptor the process may open for a while.
	for i, r := range cfg.Repositories {
		auth, err := r.Auth.AuthMethod()
		if err != nil {
			return nil, fmt.Errorf("repositories[%d] (%s): %w", i, r.URL, err)
		}
		m, err := gitrepo.OpenMirror(cfg.DataDir, gitrepo.Repository{URL: r.URL, FetchURL: r.FetchURL, Auth: auth})
		if err != nil {
			return nil, err
		}
		h.repos = append(h.repos, &watchedRepo{mirror: m, interval: r.PollInterval.Duration, pollNow: make(chan struct{}, 1)})
	}
	h.renders = discovery.NewRenderCache()
	if h.charts, err = newChartFetcher(cfg); err != nil {
		return nil, err
	}
	for _, r := range cfg.Roots {
		h.roots = append(h.roots, discovery.Root{Name: r.Name, RepoURL: r.Repo, Path: r.Path, Revision: r.Revision, Clusters: r.ClusterSelector()})
	}
	if err := h.connectNATS(); err != nil {
		return nil, err
	}
	apiHost, _, _ := net.SplitHostPort(cfg.Listen)
	if h.apiTLS, err = h.listenerTLS("tls", cfg.TLS, apiHost); err != nil {
		return nil, err
	}
	busOpts := bus.DefaultOptions()
	busOpts.Replicas, busOpts.DesiredHistory = cfg.NATS.Replicas, uint8(cfg.History)
	limits := cfg.NATS.Limits
	busOpts.EventsMaxAge, busOpts.EventsMaxBytes, busOpts.ArtifactsMaxBytes = limits.EventsMaxAge.Duration, limits.EventsMaxBytes, limits.ArtifactsMaxBytes
	b, err := h.provision(ctx, busOpts, clustered)
	if err != nil {
		return nil, err
	}
	// The key is loaded once the bus is up: it is created only while the
	// desired-state bucket is empty (publish.LoadKeys).
	keys, err := publish.LoadKeys(ctx, b, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	h.signer = keys.Signer
	if h.elector, err = leader.New(b, leader.Options{Self: leader.Record{Holder: cfg.Replica.Name, APIURL: h.apiURL()}, Log: log}); err != nil {
		return nil, err
	}
	h.bus, h.publisher = b, publish.New(fencedStore{Bus: b, elector: h.elector}, keys, log)
	h.fleet = fleet.New(fencedStore{Bus: b, elector: h.elector}, keys, time.Now, log)
	// Reading every desired state back takes JetStream requests, which a
	// fleet reconnecting to a restarted hub can keep waiting past their
	// timeouts: tried again until answered, unless what it read says the
	// hub's keys are not the ones that signed it.
	if _, err := untilAnswered(ctx, log, "waiting for JetStream to read the desired states back", func() (struct{}, error) {
		attempt, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := h.publisher.Load(attempt)
		if errors.Is(err, publish.ErrUntrustedBus) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}); err != nil {
		return nil, err
	}

	return h, nil
}

// newChartFetcher reads the chart repositories' secrets and caches charts
// in the data directory.
func newChartFetcher(cfg *config.Config) (*charts.Fetcher, error) {
	opts := charts.DefaultOptions(filepath.Join(cfg.DataDir, "charts"))
	opts.RefreshInterval = cfg.Charts.RefreshInterval.Duration
	for i, r := range cfg.Charts.Repositories {
		password, err := r.Password()
		if err != nil {
			return nil, fmt.Errorf("charts.repositories[%d] (%s): %w", i, r.URL, err)
		}
		url := r.URL
		if r.EnableOCI && !strings.Contains(url, "://") {
			url = "oci://" + url
		}
		opts.Repositories = append(opts.Repositories, charts.Repository{
			URL: url, Name: r.Name, Username: r.Username, Password: password, CAFile: r.CAFile, PlainHTTP: r.InsecurePlainHTTP,
		})
	}
	return charts.New(opts)
}

// Close stops NATS; Run must have returned.
func (h *Hub) Close() {
	if h.nc != nil {
		h.nc.Close()
	}
	if h.natsSrv != nil {
		h.natsSrv.Shutdown()
		h.natsSrv.WaitForShutdown()
	}
}

// NATSURL is where agents connect: nats.advertiseURL, or the embedded
// server's address.
func (h *Hub) NATSURL() string { return h.natsURL }

// PublicKey is the PEM key set agents trust: the signing key first, then
// the keys still trusted during a rotation (docs/operations.md).
func (h *Hub) PublicKey() []byte { return h.publisher.Keys().PEM() }

// Run polls Git, watches registrations, serves HTTP on the configured
// address and reconciles until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", h.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return h.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened; the hub adds TLS.
func (h *Hub) Serve(ctx context.Context, ln net.Listener) error {
	if h.apiTLS != nil {
		ln = tls.NewListener(ln, h.apiTLS)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := func(what string, start func() (<-chan struct{}, error)) (<-chan struct{}, error) {
		return untilAnswered(ctx, h.log, "waiting for JetStream to "+what, start)
	}
	identitiesLoaded, err := watch("watch cluster identities", func() (<-chan struct{}, error) {
		return h.bus.WatchIdentities(ctx, h.identityChanged)
	})
	if err != nil {
		return nil // ctx ended
	}
	initial, err := watch("watch cluster registrations", func() (<-chan struct{}, error) {
		return h.bus.WatchClusters(ctx, h.clusterChanged)
	})
	if err != nil {
		return nil
	}
	if h.statusesLoaded, err = watch("watch statuses", func() (<-chan struct{}, error) {
		return h.bus.WatchStatuses(ctx, func(key string, st *flotillav1.AppStatus) {
			h.mu.Lock()
			h.statuses[key] = st
			h.mu.Unlock()
			h.wakeFleet()
		})
	}); err != nil {
		return nil
	}
	rolloutsLoaded, err := watch("watch fleet rollouts", func() (<-chan struct{}, error) {
		return h.bus.WatchFleetRollouts(ctx, h.fleet.Observe)
	})
	if err != nil {
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, loaded := range []<-chan struct{}{identitiesLoaded, initial, rolloutsLoaded} {
		select {
		case <-loaded:
		case <-ctx.Done():
			return nil
		}
	}
	if _, err := untilAnswered(ctx, h.log, "waiting for JetStream to follow the desired states", func() (struct{}, error) {
		return struct{}{}, h.bus.FollowDesired(ctx, h.publisher.Observe)
	}); err != nil {
		return nil // ctx ended
	}
	wg.Go(func() { h.elector.Run(ctx, h.lead) })
	wg.Go(func() { h.followLeader(ctx) })
	// The API serves once this replica led its first pass, or another
	// leads: an operator's call always finds Git's desired state known.
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil
	}

	// Shutdown lets the calls under way finish; a dashboard's WatchFleet
	// stream, which would not, ends as it begins.
	streams := make(chan struct{})
	srv := &http.Server{Handler: h.handler(streams), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(func() { close(streams) })
	wg.Go(func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	})
	h.log.Info("hub running", "listen", ln.Addr().String(), "nats", h.NATSURL(), "roots", len(h.roots), "repositories", len(h.repos))
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// handler serves the API, the dashboard and its sign-in, the webhook, the
// public key, health and metrics; metrics to API tokens only when
// api.metricsRequireToken is set. Its WatchFleet streams end once
// streams is closed.
func (h *Hub) handler(streams <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	// Every replica derives the same session key from the signing key
	// they share, so a session outlives the replica that signed it in.
	auth := api.NewAuth(h.tokens, h.signer.DeriveKey("dashboard sessions"))
	metrics := promhttp.HandlerFor(h.metrics.registry, promhttp.HandlerOpts{})
	if h.cfg.API.MetricsRequireToken {
		metrics = auth.Require(metrics)
	}
	mux.Handle("GET /metrics", metrics)
	path, apiHandler := api.NewHandler(h, bus.DefaultOptions().ClusterTTL, auth, streams)
	toLeader := h.toLeader()
	mux.Handle(path, h.leaderOnly(apiHandler, auth.Require(http.MaxBytesHandler(toLeader, api.MaxRequestBytes))))
	mux.HandleFunc("/api/session", auth.ServeSession)
	dashboard.Register(mux)
	mux.Handle("POST /api/webhook", h.leaderOnly(http.HandlerFunc(h.serveWebhook), http.MaxBytesHandler(toLeader, maxWebhookBody)))
	mux.HandleFunc("GET /api/public-key", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(h.PublicKey())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// Clusters implements api.Hub: every cluster with an identity, and any
// registration without one (an external NATS's clusters before
// `flotilla cluster add`), which no application targets.
func (h *Hub) Clusters() []api.Cluster {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]api.Cluster, 0, len(h.identities))
	for name, id := range h.identities {
		out = append(out, api.Cluster{Name: name, Labels: id.Labels, Registration: h.clusters[name], RevokedAt: id.RevokedAt})
	}
	for name, reg := range h.clusters {
		if _, ok := h.identities[name]; !ok {
			out = append(out, api.Cluster{Name: name, Registration: reg})
		}
	}
	return out
}

// Published implements api.Hub.
func (h *Hub) Published() []*flotillav1.DesiredState { return h.publisher.All() }

func (h *Hub) requestReconcile(cause trace.SpanContext) {
	select {
	case h.trigger <- cause:
	default: // a pass is already pending; it will see this change too
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", portStr, err)
	}
	return host, port, nil
}
