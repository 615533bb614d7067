package hub

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/hub/discovery"
	"github.com/flotilla-dev/flotilla/hub/fleet"
	"github.com/flotilla-dev/flotilla/hub/publish"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/bus"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// pollLoop checks a repository every interval, or at once on a webhook.
func (h *Hub) pollLoop(ctx context.Context, r *watchedRepo) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.pollNow:
		}
		h.poll(ctx, r)
	}
}

// poll lists the remote's refs (cheap) and fetches only when they moved.
func (h *Hub) poll(ctx context.Context, r *watchedRepo) {
	ctx, span := tracer.Start(ctx, "hub.poll", trace.WithAttributes(attribute.String("vcs.repository.url.full", r.mirror.URL())))
	defer span.End()
	subject := "repo " + r.mirror.URL()
	result := "unchanged"
	refs, err := r.mirror.RemoteRefs(ctx)
	if err == nil && r.mirror.Changed(refs) {
		_, fetchSpan := tracer.Start(ctx, "hub.fetch")
		err = r.mirror.Fetch(ctx, refs)
		fetchSpan.End()
		if err == nil {
			result = "fetched"
			h.log.Info("repository changed", "repo", r.mirror.URL(), "head", refs["HEAD"].String())
			h.requestReconcile(span.SpanContext())
		}
	}
	if err != nil {
		result = "error"
		span.SetStatus(codes.Error, err.Error())
	}
	h.metrics.gitPolls.WithLabelValues(r.mirror.URL(), result).Inc()
	h.report(ctx, subject, "", err, flotillav1.ReasonGitFetchFailed)
}

// chartRefreshLoop asks for a pass every charts.refreshInterval while an
// application names a chart from a repository: the pass asks the indexes
// again (conditionally) and publishes what a range now resolves to.
func (h *Hub) chartRefreshLoop(ctx context.Context) {
	t := time.NewTicker(max(h.cfg.Charts.RefreshInterval.Duration, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if h.usesCharts.Load() {
				h.requestReconcile(trace.SpanContext{})
			}
		}
	}
}

// reconcileLoop runs one discovery-and-publish pass per request, and
// after a pass whose publish failed (JetStream away, a partly
// acknowledged write) another, with exponential backoff (1 s to 30 s),
// until one succeeds: the poll has recorded the commit already, so
// nothing else would publish it before the next Git change.
func (h *Hub) reconcileLoop(ctx context.Context) {
	retry := backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Second), backoff.WithMaxInterval(30*time.Second), backoff.WithMaxElapsedTime(0))
	var again, bake <-chan time.Time
	run := func(ctx context.Context) error {
		if err := ctx.Err(); err != nil {
			return err // the term ended while a request waited
		}
		err := h.reconcile(ctx)
		if err == nil {
			retry.Reset()
			again = nil
			return nil
		}
		wait := retry.NextBackOff()
		h.log.Warn("publish will be retried", "in", wait.String(), "error", err)
		again = time.After(wait)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return
		case cause := <-h.trigger:
			// An invalid span context (no cause) leaves ctx as it is.
			_ = run(trace.ContextWithRemoteSpanContext(ctx, cause))
		case req := <-h.reconcileNow:
			req.done <- run(trace.ContextWithRemoteSpanContext(ctx, req.cause))
		case <-h.fleetWake:
			bake = h.advanceFleet(ctx)
		case <-bake:
			bake = h.advanceFleet(ctx)
		case <-again:
			_ = run(ctx)
		}
	}
}

// reconcileRequest asks for a pass and waits for its outcome.
type reconcileRequest struct {
	cause trace.SpanContext
	done  chan error
}

// reconcileAndWait runs a reconcile pass that starts after the call and
// returns its error: what an operator's call needs to see its effect.
func (h *Hub) reconcileAndWait(ctx context.Context) error {
	req := reconcileRequest{cause: trace.SpanContextFromContext(ctx), done: make(chan error, 1)}
	select {
	case h.reconcileNow <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reconcile discovers every root's applications for the known clusters and
// publishes what changed. Its error is the publication's; discovery errors
// are reported per application and root.
func (h *Hub) reconcile(ctx context.Context) error {
	ctx, span := tracer.Start(ctx, "hub.reconcile")
	defer span.End()
	start := time.Now()
	defer func() { h.metrics.reconcileDur.Observe(time.Since(start).Seconds()) }()
	trees := &treeCache{hub: h, dir: filepath.Join(h.cfg.DataDir, "trees"), used: map[string]*discovery.Tree{}}
	defer trees.prune()

	view := h.clusterView()
	clusters := view.known
	_, discoverSpan := tracer.Start(ctx, "hub.discover")
	res := discovery.Discover(ctx, h.roots, clusters, discovery.Sources{Trees: trees, Charts: h.charts, Renders: h.renders})
	discoverSpan.SetAttributes(attribute.Int("flotilla.apps", len(res.Apps)), attribute.Int("flotilla.errors", len(res.Errors)))
	discoverSpan.End()
	if err := ctx.Err(); err != nil {
		// The pass was cut off (the term ended, the hub stops): what
		// discovery saw is no news about Git, and nothing is published.
		return err
	}

	for _, root := range h.roots {
		h.report(ctx, "root "+root.Name, "", res.RootErrors[root.Name], flotillav1.ReasonDiscoveryFailed)
	}
	failed := map[string]error{}
	for _, e := range res.Errors {
		failed[e.App] = e.Err
	}
	for _, name := range slices.Sorted(maps.Keys(h.appSubjects(failed))) {
		if failed[name] == nil && len(res.RootErrors) > 0 {
			continue // not evaluated while a root fails: no news, good or bad
		}
		h.report(ctx, "app "+name, name, failed[name], flotillav1.ReasonAppInvalid)
	}
	h.recordRefusals(ctx, failed, len(res.RootErrors) == 0)
	h.reportIgnoredFields(ctx, res.Apps)

	h.usesCharts.Store(slices.ContainsFunc(res.Apps, func(a *discovery.App) bool {
		return slices.ContainsFunc(a.Sources, func(s *discovery.Source) bool { return s.Chart != nil })
	}))
	h.metrics.appErrors.Set(float64(len(res.Errors)))
	h.fleet.SetPlans(fleet.Plans(res.Apps, clusters))
	h.last = &pass{result: res, clusters: view}
	defer h.wakeFleet()
	report, err := h.publisher.Publish(ctx, res, view.held, h.fleet)
	if err != nil {
		h.metrics.reconciles.WithLabelValues("error").Inc()
		pending := 0
		if report != nil {
			pending = report.Pending
			h.publishedEvents(ctx, report) // what was written is published
		} else {
			for _, app := range res.Apps {
				pending += len(app.Clusters)
			}
		}
		h.metrics.publishPending.Set(float64(pending))
		span.SetStatus(codes.Error, err.Error())
		h.log.Error("publish failed", "error", err, "pending", pending)
		return err
	}
	h.metrics.publishPending.Set(0)
	h.metrics.reconciles.WithLabelValues("ok").Inc()
	h.publishedEvents(ctx, report)
	return nil
}

// publishedEvents counts and records what a publish wrote.
func (h *Hub) publishedEvents(ctx context.Context, report *publish.Report) {
	h.metrics.published.WithLabelValues("deletion").Add(float64(len(report.Deleted)))
	h.metrics.published.WithLabelValues("update").Add(float64(len(report.Published) - len(report.Deleted)))
	if len(report.Published) > 0 {
		h.log.Info("published desired state", "published", len(report.Published), "deleted", report.Deleted, "unchanged", report.Unchanged, "artifacts_stored", report.ArtifactsStored)
		events := make([]*flotillav1.Event, 0, len(report.Published))
		for _, key := range report.Published {
			cluster, app, _ := appkey.Split(key)
			ds := h.publisher.Latest(cluster, app)
			reason, msg := flotillav1.ReasonPublished, fmt.Sprintf("desired state %d published for commit %s", ds.GetHistoryId(), ds.GetSource().GetCommit())
			if slices.Contains(report.Released, key) {
				msg += " (rollback pin released)"
			}
			if ds.GetDeletion() != nil {
				reason, msg = flotillav1.ReasonDeleted, fmt.Sprintf("application removed from Git (cascade=%t)", ds.GetDeletion().GetCascade())
			}
			events = append(events, h.newEvent(ctx, &flotillav1.Event{Cluster: cluster, App: app, Type: flotillav1.EventType_EVENT_TYPE_NORMAL, Reason: reason, Message: msg,
				Revision: ds.GetSource().GetCommit(), HistoryId: ds.GetHistoryId()}))
		}
		if err := h.bus.AppendEvents(ctx, events); err != nil {
			h.log.Error("append events", "error", err)
		}
	}
}

// appSubjects are the applications whose error state may have changed:
// those failing now and those that failed before.
func (h *Hub) appSubjects(failed map[string]error) map[string]bool {
	names := map[string]bool{}
	for name := range failed {
		names[name] = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for subject := range h.reported {
		if name, ok := strings.CutPrefix(subject, "app "); ok {
			names[name] = true
		}
	}
	return names
}

// reportIgnoredFields records a warning event for each application whose
// manifest has fields Flotilla does not act on, when they first appear or
// change. (The agents report them with each status too.)
func (h *Hub) reportIgnoredFields(ctx context.Context, apps []*discovery.App) {
	for _, a := range apps {
		name := a.Application.Metadata.Name
		warning := strings.Join(a.Application.Warnings, "; ")
		h.mu.Lock()
		prev := h.ignoredFields[name]
		h.ignoredFields[name] = warning
		h.mu.Unlock()
		if warning != "" && warning != prev {
			h.log.Warn("application fields not acted on", "app", name, "fields", warning)
			h.event(ctx, &flotillav1.Event{App: name, Type: flotillav1.EventType_EVENT_TYPE_WARNING, Reason: flotillav1.ReasonFieldsIgnored, Message: warning})
		}
	}
}

// recordRefusals keeps every replica's view of which applications the
// hub refuses, and why, in the status bucket under bus.HubEventsCluster:
// a refusal is written when it appears or changes, and cleared (phase
// Succeeded) when the application is accepted again. Only a pass that
// evaluated every root clears one. What another leader wrote is compared
// too, so none stays stale across a failover.
func (h *Hub) recordRefusals(ctx context.Context, failed map[string]error, complete bool) {
	h.mu.Lock()
	current := map[string]*flotillav1.AppStatus{}
	for _, st := range h.statuses {
		if st.GetCluster() == bus.HubEventsCluster {
			current[st.GetApp()] = st
		}
	}
	h.mu.Unlock()
	var writes []*flotillav1.AppStatus
	for _, app := range slices.Sorted(maps.Keys(failed)) {
		msg := failed[app].Error()
		if prev := current[app]; prev.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED || prev.GetMessage() != msg {
			writes = append(writes, &flotillav1.AppStatus{Phase: flotillav1.SyncPhase_SYNC_PHASE_FAILED, App: app, Message: msg})
		}
	}
	if complete {
		for _, app := range slices.Sorted(maps.Keys(current)) {
			if failed[app] == nil && current[app].GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_FAILED {
				writes = append(writes, &flotillav1.AppStatus{Phase: flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED, App: app})
			}
		}
	}
	for _, st := range writes {
		st.SchemaVersion, st.Cluster, st.ObservedAt = 1, bus.HubEventsCluster, timestamppb.Now()
		if err := h.bus.PutStatus(ctx, st); err != nil {
			h.log.Error("record the hub's verdict on an application", "app", st.GetApp(), "error", err)
		}
	}
}

// report logs and records an error for subject when it first appears or
// changes, and a recovery when it clears.
func (h *Hub) report(ctx context.Context, subject, app string, err error, reason string) {
	h.mu.Lock()
	prev, had := h.reported[subject]
	switch {
	case err == nil && !had:
		h.mu.Unlock()
		return
	case err == nil:
		delete(h.reported, subject)
	case had && prev == err.Error():
		h.mu.Unlock()
		return
	default:
		h.reported[subject] = err.Error()
	}
	h.mu.Unlock()
	if err == nil {
		h.log.Info("recovered", "subject", subject)
		h.event(ctx, &flotillav1.Event{App: app, Type: flotillav1.EventType_EVENT_TYPE_NORMAL, Reason: flotillav1.ReasonRecovered, Message: subject + " is healthy again"})
		return
	}
	h.log.Error("hub error", "subject", subject, "reason", reason, "error", err)
	h.event(ctx, &flotillav1.Event{App: app, Type: flotillav1.EventType_EVENT_TYPE_WARNING, Reason: reason, Message: err.Error()})
}

func (h *Hub) event(ctx context.Context, ev *flotillav1.Event) {
	if err := h.bus.AppendEvent(ctx, h.newEvent(ctx, ev)); err != nil {
		h.log.Error("append event", "error", err)
	}
}

// newEvent fills the fields every hub event carries; the source and actor
// are the hub's unless the event names an operator's call.
func (h *Hub) newEvent(ctx context.Context, ev *flotillav1.Event) *flotillav1.Event {
	ev.SchemaVersion = 1
	ev.Time = timestamppb.Now()
	if ev.Source == "" {
		ev.Source = "hub"
	}
	if ev.Actor == "" {
		ev.Actor = "hub"
	}
	ev.TraceId = trace.SpanContextFromContext(ctx).TraceID().String()
	return ev
}

// clusterChanged keeps the registry and reconciles when a cluster appears
// or its labels change. A registration that expires leaves the cluster
// known (stale): its applications are never deleted because it went quiet.
func (h *Hub) clusterChanged(change bus.ClusterChange) {
	if change.Registration == nil {
		h.log.Warn("cluster registration expired", "cluster", change.Name)
		return
	}
	if !appspec.ValidName(change.Name) || change.Registration.GetName() != change.Name {
		h.log.Warn("ignoring registration with an invalid cluster name", "cluster", change.Name)
		return
	}
	// Liveness is judged by when the hub saw the heartbeat, not by the
	// agent's clock.
	change.Registration.HeartbeatAt = timestamppb.Now()
	h.mu.Lock()
	prev := h.clusters[change.Name]
	h.clusters[change.Name] = change.Registration
	h.metrics.clusters.Set(float64(len(h.clusters)))
	h.mu.Unlock()
	switch {
	case prev == nil:
		h.log.Info("cluster registered", "cluster", change.Name)
		h.requestReconcile(trace.SpanContext{})
	case !slices.Equal(prev.GetServerUrls(), change.Registration.GetServerUrls()):
		h.log.Info("cluster registered other server URLs", "cluster", change.Name, "urls", change.Registration.GetServerUrls())
		h.requestReconcile(trace.SpanContext{})
	}
}

// clusterView is what a pass knows of the clusters, read at one instant.
type clusterView struct {
	// known are the clusters applications target: registered by their
	// agents, with a current identity, whose labels they carry. A
	// registration's own labels count for nothing: a cluster cannot
	// choose what it receives.
	known []appspec.Cluster
	// held are the clusters whose published desired states stay as they
	// are (publish.Publisher.Publish): those whose identity is revoked,
	// and those with an identity whose agent has not registered since
	// this replica started. A registration expires with its heartbeats;
	// a replica that was running keeps an expired one (a stale cluster),
	// but one that starts while a cluster's agent is away, or too busy to
	// heartbeat (a whole fleet reconnecting to a restarted hub), finds
	// none, and without holding it would publish deletions of everything
	// the cluster runs.
	held map[string]bool
}

// pass is a discovery and the clusters it was for.
type pass struct {
	result   *discovery.Result
	clusters clusterView
}

// clusterView reads the known and the held clusters under one lock. Read
// apart, a cluster that registered in between was neither known to the
// discovery nor held from the publish, and the pass published deletions
// of everything it runs (found by the fleet simulator: clusters whose
// agents registered during a restarted hub's pass lost every application
// for a moment).
func (h *Hub) clusterView() clusterView {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := clusterView{held: map[string]bool{}}
	for name, id := range h.identities {
		if _, registered := h.clusters[name]; id.Revoked() || !registered {
			t.held[name] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(h.clusters)) {
		if id, ok := h.identities[name]; ok && !id.Revoked() {
			t.known = append(t.known, appspec.Cluster{Name: name, Labels: id.Labels, ServerURLs: h.clusters[name].GetServerUrls()})
		}
	}
	return t
}

// gcLoop deletes unreferenced artifacts at the start of a term and every
// GC interval after, and has keys whose newest entry turned out to be a
// replay signed again.
func (h *Hub) gcLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.GCInterval.Duration)
	defer t.Stop()
	for {
		if n, err := h.publisher.CollectGarbage(ctx); err != nil {
			h.log.Error("artifact garbage collection", "error", err)
		} else if n > 0 {
			h.log.Info("artifacts garbage-collected", "deleted", n)
		}
		if h.publisher.Resigning() {
			h.requestReconcile(trace.SpanContext{})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// treeCache checks out each (repository, commit) once per reconcile, into
// the data directory, and removes checkouts no longer used.
type treeCache struct {
	hub  *Hub
	dir  string
	used map[string]*discovery.Tree
}

func (c *treeCache) Tree(ctx context.Context, repoURL, revision string) (*discovery.Tree, error) {
	var repo *watchedRepo
	for _, r := range c.hub.repos {
		if config.NormalizeURL(r.mirror.URL()) == config.NormalizeURL(repoURL) {
			repo = r
		}
	}
	if repo == nil {
		return nil, fmt.Errorf("repository %q is not configured in the hub (repositories[].url)", repoURL)
	}
	commit, err := repo.mirror.Resolve(revision)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.dir, commit.Hash.String())
	if t, ok := c.used[dir]; ok {
		return t, nil
	}
	if _, err := os.Stat(dir); err != nil {
		if err := c.checkout(repo, commit, dir); err != nil {
			return nil, err
		}
	}
	t := &discovery.Tree{RepoURL: repo.mirror.URL(), Dir: dir, Commit: commit}
	c.used[dir] = t
	return t, nil
}

// checkout writes the tree beside dir and renames it into place, so a
// half-written checkout is never used.
func (c *treeCache) checkout(repo *watchedRepo, commit *object.Commit, dir string) error {
	staging := c.dir + "-tmp"
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(staging, "")
	if err != nil {
		return err
	}
	if err := repo.mirror.Checkout(commit, tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return nil
}

func (c *treeCache) prune() {
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		p := filepath.Join(c.dir, e.Name())
		if _, ok := c.used[p]; !ok {
			os.RemoveAll(p)
		}
	}
}
