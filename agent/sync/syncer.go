package sync

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/health"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/agent/rollouts"
	"github.com/flotilla-dev/flotilla/agent/waves"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/ignore"
	"github.com/flotilla-dev/flotilla/internal/render"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

var tracer = otel.Tracer("github.com/flotilla-dev/flotilla/agent/sync")

// AppLabel marks every object the agent applies with its application, so
// watches and selectors find only managed objects.
const AppLabel = "flotilla.dev/app"

// Artifacts fetch artifact bytes by digest.
type Artifacts interface {
	GetArtifact(ctx context.Context, digest string) ([]byte, error)
}

// Reporter sends status and events back to the hub and reads the last
// status it sent.
type Reporter interface {
	PutStatus(ctx context.Context, st *flotillav1.AppStatus) error
	Event(ctx context.Context, ev *flotillav1.Event)
	LastStatus(ctx context.Context, cluster, app string) (*flotillav1.AppStatus, error)
}

// Options configure a Syncer.
type Options struct {
	Cluster string
	// CacheDir holds unpacked artifacts by digest.
	CacheDir string
	Limits   artifact.Limits
	// HealthInterval is how often a not-yet-healthy application is
	// re-checked and HealthTimeout how long it is followed.
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// ResyncInterval is how often every application is compared with its
	// live objects in full, catching what a watch missed (jittered ±10 %).
	ResyncInterval time.Duration
	// Metrics, when set, count syncs and writes.
	Metrics *Metrics
}

// Syncer applies desired state to one cluster.
type Syncer struct {
	opts      Options
	log       *slog.Logger
	manager   *apply.Manager
	inventory *inventory.Store
	artifacts Artifacts
	reporter  Reporter
	kube      string // the cluster's version, for Helm's .Capabilities

	mu   gosync.Mutex
	apps map[string]*appWorker
	// watched are the resources whose managed objects are watched for drift.
	watched map[schema.GroupVersionResource]bool
	// traces are the span contexts of each application's last sync.
	traces map[string]trace.SpanContext
	// release returns freed memory after a burst of syncs.
	release *time.Timer
}

// New creates a Syncer.
func New(opts Options, log *slog.Logger, manager *apply.Manager, inv *inventory.Store, artifacts Artifacts, reporter Reporter) (*Syncer, error) {
	kube, err := manager.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("kubernetes version: %w", err)
	}
	return &Syncer{opts: opts, log: log, manager: manager, inventory: inv, artifacts: artifacts, reporter: reporter, kube: kube, apps: map[string]*appWorker{},
		watched: map[schema.GroupVersionResource]bool{}, traces: map[string]trace.SpanContext{}}, nil
}

// Desired is a verified desired state and the context (trace) it came with.
type Desired struct {
	State *flotillav1.DesiredState
	Ctx   context.Context
}

// Offer hands a verified desired state to its application's worker. An
// older or repeated history id is ignored; a newer one replaces one still
// waiting, so a burst of commits costs one sync.
func (s *Syncer) Offer(ctx context.Context, d Desired) {
	app := d.State.GetApp()
	s.mu.Lock()
	w, ok := s.apps[app]
	if !ok {
		w = newWorker(s, app)
		s.apps[app] = w
		go w.run(ctx)
	}
	s.mu.Unlock()
	w.offer(d)
}

// outcome is what a sync did: the objects it rendered (nil for a no-op or
// a removal), when to retry it (0: not), and its error.
type outcome struct {
	rendered []*unstructured.Unstructured
	retryIn  time.Duration
	err      error
}

// sync runs one desired state to completion and reports it. force skips
// the no-op check, so every object is dry-run and what differs written.
// attempt counts the earlier failed attempts of the same desired state.
func (s *Syncer) sync(ctx, healthCtx context.Context, d *Desired, force bool, attempt int64) outcome {
	defer s.releaseMemory()
	ds := d.State
	parent := d.Ctx
	if parent == nil {
		parent = ctx
	}
	// The span continues the hub's trace but ends with this sync, whatever
	// ctx the message came with.
	spanCtx, span := tracer.Start(trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(parent)), "agent.sync", trace.WithAttributes(
		attribute.String("flotilla.cluster", ds.GetCluster()), attribute.String("flotilla.app", ds.GetApp()),
		attribute.Int64("flotilla.history_id", int64(ds.GetHistoryId())), attribute.String("vcs.revision", ds.GetSource().GetCommit())))
	defer span.End()
	s.mu.Lock()
	s.traces[ds.GetApp()] = span.SpanContext()
	s.mu.Unlock()
	log := s.log.With("cluster", ds.GetCluster(), "app", ds.GetApp(), "history_id", ds.GetHistoryId(),
		"revision", ds.GetSource().GetCommit(), "trace_id", span.SpanContext().TraceID().String())

	st := &flotillav1.AppStatus{
		SchemaVersion: 1, Cluster: ds.GetCluster(), App: ds.GetApp(), Revision: ds.GetSource().GetCommit(),
		HistoryId: ds.GetHistoryId(), StartedAt: timestamppb.Now(), TraceId: span.SpanContext().TraceID().String(),
	}
	objs, err := s.run(spanCtx, ds, st, force)
	st.FinishedAt = timestamppb.Now()
	s.count(st, err)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		st.Phase, st.SyncStatus, st.Message = flotillav1.SyncPhase_SYNC_PHASE_FAILED, flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC, err.Error()
		if st.Health == flotillav1.HealthStatus_HEALTH_STATUS_UNSPECIFIED {
			st.Health = flotillav1.HealthStatus_HEALTH_STATUS_UNKNOWN
		}
		next := retryAfter(ds.GetSyncPolicy().GetRetry(), attempt)
		if next > 0 {
			at := time.Now().Add(next)
			st.Retry = &flotillav1.RetryStatus{Attempt: attempt + 1, Limit: ds.GetSyncPolicy().GetRetry().GetLimit(), NextAttemptAt: timestamppb.New(at)}
			st.Message += fmt.Sprintf(" (attempt %d%s failed; retrying at %s)", attempt+1, limitText(st.Retry.GetLimit()), at.UTC().Format(time.TimeOnly))
		} else if attempt > 0 {
			st.Retry = &flotillav1.RetryStatus{Attempt: attempt + 1, Limit: ds.GetSyncPolicy().GetRetry().GetLimit()}
			st.Message += fmt.Sprintf(" (attempt %d%s failed; no retries left)", attempt+1, limitText(st.Retry.GetLimit()))
		}
		log.Error("sync failed", "error", err, "attempt", attempt+1, "retry_in", next.String())
		s.report(spanCtx, st, flotillav1.EventType_EVENT_TYPE_WARNING, "SyncFailed", st.Message)
		return outcome{retryIn: next, err: err}
	}
	if ds.GetDeletion() == nil {
		s.watch(ctx, objs)
	}
	log.Info("synced", "message", st.Message, "health", st.Health.String())
	s.report(spanCtx, st, flotillav1.EventType_EVENT_TYPE_NORMAL, "SyncSucceeded", st.Message)
	if ds.GetDeletion() == nil && (st.Health != flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY || st.Message == noopMessage) {
		go s.followHealth(healthCtx, st, objs, span.SpanContext())
	}
	if st.Message == noopMessage || ds.GetDeletion() != nil {
		return outcome{}
	}
	return outcome{rendered: objs}
}

// limitText is " of N" for the N attempts a retry limit allows (the first
// and limit retries), or "" when unlimited.
func limitText(limit int64) string {
	if limit < 0 {
		return ""
	}
	return fmt.Sprintf(" of %d", limit+1)
}

func (s *Syncer) count(st *flotillav1.AppStatus, err error) {
	m := s.opts.Metrics
	if m == nil {
		return
	}
	m.duration.Observe(st.GetFinishedAt().AsTime().Sub(st.GetStartedAt().AsTime()).Seconds())
	result := "succeeded"
	switch {
	case err != nil:
		result = "failed"
	case st.GetMessage() == noopMessage:
		result = "noop"
	}
	m.syncs.WithLabelValues(result).Inc()
	for _, r := range st.GetResources() {
		switch apply.Action(r.GetAction()) {
		case apply.Created, apply.Configured, apply.Deleted:
			m.writes.Inc()
		}
	}
}

// noopMessage is the status message of a desired state applied before.
const noopMessage = "already applied"

// run does the work of a sync and fills st. It returns the applied objects.
func (s *Syncer) run(ctx context.Context, ds *flotillav1.DesiredState, st *flotillav1.AppStatus, force bool) ([]*unstructured.Unstructured, error) {
	if ds.GetDeletion() != nil {
		return nil, s.remove(ctx, ds, st)
	}
	inv, err := s.inventory.Load(ctx, ds.GetApp())
	if err != nil {
		return nil, err
	}
	if inv.Applied == appliedID(ds) && !force {
		return s.noop(ctx, ds, inv, st), nil
	}
	rendered, err := s.renderDesired(ctx, ds)
	if err != nil {
		return nil, err
	}
	plan, err := waves.Build(rendered)
	if err != nil {
		return nil, err
	}
	if err := s.sharedResources(ctx, ds, plan.Resources); err != nil {
		return nil, err
	}
	warnings, err := s.respectIgnored(ctx, ds, plan.Resources)
	if err != nil {
		return nil, err
	}
	defer func() {
		if st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED && len(warnings) > 0 {
			st.Message += "; warning: " + strings.Join(warnings, "; ")
		}
	}()
	// Watch before writing, so no change after the writes is missed.
	s.watch(ctx, plan.Resources)
	if !plan.Simple() {
		return s.runPlan(ctx, ds, st, plan, inv)
	}
	objs := plan.Resources

	_, applySpan := tracer.Start(ctx, "agent.apply")
	if err := s.createNamespace(ctx, ds, objs); err != nil {
		applySpan.End()
		return nil, err
	}
	cs, err := s.manager.ApplyAll(ctx, objs, replaceOption(ds))
	applySpan.End()
	st.Resources = resources(cs, ds)
	if err != nil {
		return nil, fmt.Errorf("nothing of history %d was applied where the dry-run failed: %w", ds.GetHistoryId(), err)
	}
	if err := s.record(ctx, ds, st, inv, objs, cs); err != nil {
		return nil, err
	}
	s.fillHealth(ctx, st, objs)
	return objs, nil
}

// respectIgnored checks spec.ignoreDifferences and gives objs the live
// values of the fields the rollouts controller sets (a Service's
// pod-template hash), and with RespectIgnoreDifferences=true of every
// field it ignores, so the sync leaves them alone. It returns the entries
// that match no object, as warnings.
func (s *Syncer) respectIgnored(ctx context.Context, ds *flotillav1.DesiredState, objs []*unstructured.Unstructured) ([]string, error) {
	rules, err := ignore.Compile(ds.GetIgnoreDifferences())
	if err != nil {
		return nil, err
	}
	all, respect, err := ignoreRules(ds, objs)
	if err != nil {
		return nil, err
	}
	if hasSyncOption(ds, "RespectIgnoreDifferences=true") {
		respect = all
	}
	var matched []*unstructured.Unstructured
	for _, o := range objs {
		if respect.Match(o) {
			matched = append(matched, o)
		}
	}
	if len(matched) > 0 {
		live, err := s.manager.Live(ctx, matched)
		if err != nil {
			return nil, err
		}
		for _, o := range matched {
			respect.Respect(o, live[apply.RefOf(o).Key()])
		}
	}
	return rules.Unmatched(objs), nil
}

// ignoreRules are what a comparison of objs with their live state
// ignores (all: the application's ignoreDifferences and the fields the
// rollouts controller sets) and, apart, the controller's fields alone,
// which every write keeps as they are live.
func ignoreRules(ds *flotillav1.DesiredState, objs []*unstructured.Unstructured) (all, controller *ignore.Rules, err error) {
	fields := rollouts.ControllerFields(objs)
	if controller, err = ignore.Compile(fields); err != nil {
		return nil, nil, err
	}
	all, err = ignore.Compile(append(slices.Clone(ds.GetIgnoreDifferences()), fields...))
	return all, controller, err
}

// record prunes what left Git, saves the inventory as applied and fills
// st's phase, sync status and summary.
func (s *Syncer) record(ctx context.Context, ds *flotillav1.DesiredState, st *flotillav1.AppStatus, inv *inventory.Inventory, objs []*unstructured.Unstructured, cs *apply.ChangeSet) error {
	current := make([]apply.ObjectRef, 0, len(objs))
	for _, o := range objs {
		current = append(current, apply.RefOf(o))
	}
	gone := inventory.Diff(inv.Objects, current)
	_, pruneSpan := tracer.Start(ctx, "agent.prune", trace.WithAttributes(attribute.Int("flotilla.candidates", len(gone))))
	kept, pruned, err := s.prune(ctx, ds, gone)
	pruneSpan.End()
	st.Resources = append(st.Resources, pruned...)
	if err != nil {
		return err
	}
	inv.Objects = append(current, kept...)
	inv.Applied = appliedID(ds)
	if err := s.inventory.Save(ctx, inv); err != nil {
		return err
	}
	st.Phase = flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED
	st.SyncStatus = flotillav1.SyncStatus_SYNC_STATUS_SYNCED
	if len(kept) > 0 {
		st.SyncStatus = flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
	}
	st.Message = summary(cs, len(pruned), len(kept))
	return nil
}

// noop handles a desired state applied before (after an agent restart, or
// a republish): nothing is rendered or written. Health starts from the last
// status reported for this history id and is then re-observed by the health
// follower; without one it is read now.
func (s *Syncer) noop(ctx context.Context, ds *flotillav1.DesiredState, inv *inventory.Inventory, st *flotillav1.AppStatus) []*unstructured.Unstructured {
	objs := make([]*unstructured.Unstructured, len(inv.Objects))
	for i, ref := range inv.Objects {
		objs[i] = refObject(ref)
	}
	st.Phase, st.SyncStatus, st.Message = flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED, flotillav1.SyncStatus_SYNC_STATUS_SYNCED, noopMessage
	if prev, err := s.reporter.LastStatus(ctx, ds.GetCluster(), ds.GetApp()); err == nil && prev.GetHistoryId() == ds.GetHistoryId() &&
		prev.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_UNSPECIFIED {
		st.Health, st.Resources = prev.GetHealth(), prev.GetResources()
		return objs
	}
	s.fillHealth(ctx, st, objs)
	return objs
}

// appliedID identifies a desired state for the inventory's no-op check.
func appliedID(ds *flotillav1.DesiredState) string {
	return fmt.Sprintf("%d/%s", ds.GetHistoryId(), ds.GetArtifact().GetDigest())
}

// renderDesired fetches the artifact and renders the objects to apply.
func (s *Syncer) renderDesired(ctx context.Context, ds *flotillav1.DesiredState) ([]*unstructured.Unstructured, error) {
	_, fetchSpan := tracer.Start(ctx, "agent.fetch")
	dir, err := s.unpacked(ctx, ds.GetArtifact())
	fetchSpan.End()
	if err != nil {
		return nil, err
	}
	_, renderSpan := tracer.Start(ctx, "agent.render")
	defer renderSpan.End()
	ns := ds.GetDestination().GetNamespace()
	res, err := render.Render(ctx, render.Request{
		Root: dir, Path: ds.GetArtifact().GetRoot(), Spec: ds.GetRender(),
		ReleaseName: ds.GetApp(), Namespace: ns, KubeVersion: s.kube,
	})
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, m := range res.Manifests {
		if appspec.IsArgoKind(m.Object.GetAPIVersion(), m.Object.GetKind()) {
			continue // the hub interprets Applications; they are not applied
		}
		objs = append(objs, m.Object)
	}
	s.manager.Normalize(objs, ns)
	for _, o := range objs {
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[AppLabel] = ds.GetApp()
		o.SetLabels(labels)
	}
	return objs, nil
}

// createNamespace creates the destination namespace with CreateNamespace=true,
// as Argo CD does: it is not part of the application (several applications
// share a namespace), so it is never pruned or deleted with one. A chart
// that renders its own Namespace manages it instead.
func (s *Syncer) createNamespace(ctx context.Context, ds *flotillav1.DesiredState, objs []*unstructured.Unstructured) error {
	ns := ds.GetDestination().GetNamespace()
	if ns == "" || !hasSyncOption(ds, "CreateNamespace=true") {
		return nil
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1" && o.GetName() == ns {
			return nil
		}
	}
	nsObj := &unstructured.Unstructured{}
	nsObj.SetAPIVersion("v1")
	nsObj.SetKind("Namespace")
	nsObj.SetName(ns)
	if _, err := s.manager.ApplyAll(ctx, []*unstructured.Unstructured{nsObj}); err != nil {
		return fmt.Errorf("CreateNamespace=true: %w", err)
	}
	return nil
}

// unpacked returns the directory of an artifact, fetching, verifying and
// unpacking it into the cache on first use.
func (s *Syncer) unpacked(ctx context.Context, a *flotillav1.Artifact) (string, error) {
	digest := a.GetDigest()
	if !strings.HasPrefix(digest, artifact.DigestPrefix) || len(digest) != len(artifact.DigestPrefix)+64 {
		return "", fmt.Errorf("artifact digest %q is malformed", digest)
	}
	dir := filepath.Join(s.opts.CacheDir, strings.TrimPrefix(digest, artifact.DigestPrefix))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if a.GetSize() > s.opts.Limits.MaxArchive {
		return "", fmt.Errorf("artifact %s: %w: %d bytes, limit %d", digest, artifact.ErrTooLarge, a.GetSize(), s.opts.Limits.MaxArchive)
	}
	data, err := s.artifacts.GetArtifact(ctx, digest)
	if err != nil {
		return "", err
	}
	if err := artifact.Verify(data, digest); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(s.opts.CacheDir, ".unpack-")
	if err != nil {
		return "", err
	}
	if err := artifact.Unpack(data, tmp, s.opts.Limits); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("artifact %s: %w", digest, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, nil
		}
		return "", err
	}
	return dir, nil
}

// prune deletes the objects that left Git when automated prune is on and
// the object does not say Prune=false; the others are kept and reported.
func (s *Syncer) prune(ctx context.Context, ds *flotillav1.DesiredState, gone []apply.ObjectRef) (kept []apply.ObjectRef, statuses []*flotillav1.ResourceStatus, err error) {
	var del []apply.ObjectRef
	for _, ref := range gone {
		if !ds.GetSyncPolicy().GetAutomated().GetPrune() || s.hasSyncOption(ctx, ref, "Prune=false") {
			kept = append(kept, ref)
			statuses = append(statuses, resourceStatus(apply.Change{Ref: ref, Action: apply.PruneSkipped, Message: "no longer in Git; prune is off for it"}, flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC))
			continue
		}
		del = append(del, ref)
	}
	cs, err := s.manager.DeleteAll(ctx, del, propagation(ds))
	for _, c := range cs.Changes {
		statuses = append(statuses, resourceStatus(c, flotillav1.SyncStatus_SYNC_STATUS_SYNCED))
	}
	return kept, statuses, err
}

// hasSyncOption reads argocd.argoproj.io/sync-options of a live object.
func (s *Syncer) hasSyncOption(ctx context.Context, ref apply.ObjectRef, option string) bool {
	live, err := s.get(ctx, refObject(ref))
	return err == nil && live != nil && hasOption(live, option)
}

// propagation is the app's PrunePropagationPolicy. Without one it is
// background, where Argo CD's default is foreground: the end state is the
// same, but the pruned owner goes first and the garbage collector removes
// its dependents after it (docs/agent.md).
func propagation(ds *flotillav1.DesiredState) metav1.DeletionPropagation {
	for _, p := range []metav1.DeletionPropagation{metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan} {
		if hasSyncOption(ds, "PrunePropagationPolicy="+strings.ToLower(string(p))) {
			return p
		}
	}
	return metav1.DeletePropagationBackground
}

// sharedResources names the objects among objs that another application
// manages (their AppLabel names it): with FailOnSharedResource=true the
// sync fails on them rather than take them over.
func (s *Syncer) sharedResources(ctx context.Context, ds *flotillav1.DesiredState, objs []*unstructured.Unstructured) error {
	if !hasSyncOption(ds, "FailOnSharedResource=true") {
		return nil
	}
	live, err := s.manager.Live(ctx, objs)
	if err != nil {
		return err
	}
	var shared []string
	for _, o := range objs {
		if l := live[apply.RefOf(o).Key()]; l != nil {
			if owner := l.GetLabels()[AppLabel]; owner != "" && owner != ds.GetApp() {
				shared = append(shared, fmt.Sprintf("%s is managed by application %s", apply.RefOf(o), owner))
			}
		}
	}
	if len(shared) > 0 {
		return fmt.Errorf("FailOnSharedResource=true: nothing was applied: %s", strings.Join(shared, "; "))
	}
	return nil
}

// replaceOption replaces objects whole where Argo CD's Replace=true says
// so: on the application, or on the object.
func replaceOption(ds *flotillav1.DesiredState) apply.Option {
	all := hasSyncOption(ds, "Replace=true")
	return apply.Replace(func(o *unstructured.Unstructured) bool { return all || hasOption(o, "Replace=true") })
}

// hasOption reports whether an object's argocd.argoproj.io/sync-options
// annotation lists option.
func hasOption(obj *unstructured.Unstructured, option string) bool {
	for _, o := range strings.Split(obj.GetAnnotations()["argocd.argoproj.io/sync-options"], ",") {
		if strings.EqualFold(strings.TrimSpace(o), option) {
			return true
		}
	}
	return false
}

// remove handles an application removed from Git: with cascade its
// objects are deleted, a wave at a time from the highest (Argo CD's
// reverse order), each wave gone before the next; objects marked
// Delete=false are left running. Without cascade all are orphaned
// (released, left running).
func (s *Syncer) remove(ctx context.Context, ds *flotillav1.DesiredState, st *flotillav1.AppStatus) error {
	inv, err := s.inventory.Load(ctx, ds.GetApp())
	if err != nil {
		return err
	}
	if ds.GetDeletion().GetCascade() {
		deleted, kept, err := s.deleteInWaves(ctx, inv.Objects, st)
		if err != nil {
			return err
		}
		st.Message = fmt.Sprintf("application removed from Git: %d objects deleted", deleted)
		if kept > 0 {
			st.Message += fmt.Sprintf(", %d left running (Delete=false)", kept)
		}
	} else {
		st.Message = fmt.Sprintf("application removed from Git: %d objects orphaned (no resources finalizer)", len(inv.Objects))
	}
	if err := s.inventory.Delete(ctx, ds.GetApp()); err != nil {
		return err
	}
	st.Phase, st.SyncStatus, st.Health = flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED, flotillav1.SyncStatus_SYNC_STATUS_SYNCED, flotillav1.HealthStatus_HEALTH_STATUS_MISSING
	return nil
}

// deleteInWaves deletes refs in reverse wave order, as the live objects'
// sync-wave annotations say, waiting for each wave to be gone.
func (s *Syncer) deleteInWaves(ctx context.Context, refs []apply.ObjectRef, st *flotillav1.AppStatus) (deleted, kept int, err error) {
	objs := make([]*unstructured.Unstructured, len(refs))
	for i, ref := range refs {
		objs[i] = refObject(ref)
	}
	live, err := s.manager.Live(ctx, objs)
	if err != nil {
		return 0, 0, err
	}
	byWave := map[int][]apply.ObjectRef{}
	for _, ref := range refs {
		wave := 0
		if obj := live[ref.Key()]; obj != nil {
			if hasOption(obj, "Delete=false") {
				kept++
				continue
			}
			wave, _ = waves.Wave(obj)
		}
		byWave[wave] = append(byWave[wave], ref)
	}
	for _, wave := range slices.Backward(slices.Sorted(maps.Keys(byWave))) {
		cs, err := s.manager.DeleteAll(ctx, byWave[wave], metav1.DeletePropagationBackground)
		for _, c := range cs.Changes {
			st.Resources = append(st.Resources, resourceStatus(c, flotillav1.SyncStatus_SYNC_STATUS_SYNCED))
		}
		if err != nil {
			return deleted, kept, err
		}
		deleted += len(cs.Changes)
		for _, ref := range byWave[wave] {
			obj := refObject(ref)
			ri, err := s.manager.Client(obj)
			if err == nil {
				err = s.waitGone(ctx, ri, ref.Name)
			}
			if err != nil {
				return deleted, kept, fmt.Errorf("wave %d: %s: %w", wave, ref, err)
			}
		}
	}
	return deleted, kept, nil
}

func (s *Syncer) get(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	ri, err := s.manager.Client(obj)
	if err != nil {
		return nil, err
	}
	return ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
}

// observed is the health of an application's objects and the progress
// of its Rollouts.
type observed struct {
	*health.Result
	rollouts []*flotillav1.RolloutStatus
}

// health reads the objects' live state (a LIST per kind and namespace) and
// computes their health and where their Rollouts are.
func (s *Syncer) health(ctx context.Context, objs []*unstructured.Unstructured) (*observed, error) {
	live, err := s.manager.Live(ctx, objs)
	if err != nil {
		return nil, err
	}
	lookup := func(o *unstructured.Unstructured) *unstructured.Unstructured { return live[apply.RefOf(o).Key()] }
	obs := &observed{Result: health.Check(objs, lookup)}
	for _, o := range objs {
		if l := lookup(o); l != nil && rollouts.IsRollout(l) {
			obs.rollouts = append(obs.rollouts, rollouts.Summarize(ctx, s.manager.Dynamic(), l))
		}
	}
	return obs, nil
}

// fillHealth reads every object's health into st.
func (s *Syncer) fillHealth(ctx context.Context, st *flotillav1.AppStatus, objs []*unstructured.Unstructured) {
	_, span := tracer.Start(ctx, "agent.health")
	defer span.End()
	res, err := s.health(ctx, objs)
	if err != nil {
		st.Health = flotillav1.HealthStatus_HEALTH_STATUS_UNKNOWN
		return
	}
	setHealth(st, objs, res)
}

// setHealth writes the health of every object into st's resources (adding
// the ones st does not list yet) and the application's overall health.
// While an object is not healthy, its resource message says why.
func setHealth(st *flotillav1.AppStatus, objs []*unstructured.Unstructured, res *observed) {
	st.Health, st.Rollouts = res.Overall, res.rollouts
	byKey := make(map[string]*flotillav1.ResourceStatus, len(st.Resources))
	for _, r := range st.Resources {
		byKey[apply.ObjectRef{Group: r.GetGroup(), Kind: r.GetKind(), Namespace: r.GetNamespace(), Name: r.GetName()}.Key()] = r
	}
	for i, o := range objs {
		ref := apply.RefOf(o)
		r, ok := byKey[ref.Key()]
		if !ok {
			r = &flotillav1.ResourceStatus{Group: ref.Group, Version: ref.Version, Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name,
				SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_SYNCED, Action: string(apply.Unchanged)}
			st.Resources = append(st.Resources, r)
			byKey[ref.Key()] = r
		}
		r.Health = res.Objects[i]
		switch {
		case r.GetAction() == string(apply.Failed):
			// keep the failure
		case r.Health == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY:
			r.Message = ""
		default:
			r.Message = res.Message[i]
		}
	}
}

// followHealth re-checks an application that is not healthy yet and
// reports each change of its health, until it is healthy, the timeout
// passes or a newer desired state arrives (ctx ends).
func (s *Syncer) followHealth(ctx context.Context, st *flotillav1.AppStatus, objs []*unstructured.Unstructured, sc trace.SpanContext) {
	defer s.releaseMemory()
	ctx = trace.ContextWithSpanContext(ctx, sc)
	t := time.NewTicker(s.opts.HealthInterval)
	defer t.Stop()
	deadline := time.After(s.opts.HealthTimeout)
	last := st.Health
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-t.C:
		}
		res, err := s.health(ctx, objs)
		if err != nil || res.Overall == last {
			continue
		}
		last = res.Overall
		setHealth(st, objs, res)
		st.ObservedAt = timestamppb.Now()
		reason := "HealthChanged"
		s.report(ctx, st, flotillav1.EventType_EVENT_TYPE_NORMAL, reason, "health is "+health.Name(res.Overall))
		if last == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY {
			return
		}
	}
}

func (s *Syncer) report(ctx context.Context, st *flotillav1.AppStatus, typ flotillav1.EventType, reason, message string) {
	st.ObservedAt = timestamppb.Now()
	if err := s.reporter.PutStatus(ctx, st); err != nil {
		s.log.Error("report status", "app", st.GetApp(), "error", err)
	}
	s.reporter.Event(ctx, &flotillav1.Event{
		SchemaVersion: 1, Time: timestamppb.Now(), Cluster: st.GetCluster(), App: st.GetApp(), Type: typ, Reason: reason,
		Message: message, Revision: st.GetRevision(), HistoryId: st.GetHistoryId(), TraceId: st.GetTraceId(),
		Source: "agent", Actor: "agent/" + st.GetCluster(),
	})
}

func resources(cs *apply.ChangeSet, ds *flotillav1.DesiredState) []*flotillav1.ResourceStatus {
	var out []*flotillav1.ResourceStatus
	for _, c := range cs.Changes {
		sync := flotillav1.SyncStatus_SYNC_STATUS_SYNCED
		if c.Action == apply.Failed {
			sync = flotillav1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		}
		out = append(out, resourceStatus(c, sync))
	}
	return out
}

func resourceStatus(c apply.Change, sync flotillav1.SyncStatus) *flotillav1.ResourceStatus {
	return &flotillav1.ResourceStatus{Group: c.Ref.Group, Version: c.Ref.Version, Kind: c.Ref.Kind, Namespace: c.Ref.Namespace, Name: c.Ref.Name,
		SyncStatus: sync, Action: string(c.Action), Message: c.Message}
}

func summary(cs *apply.ChangeSet, pruned, kept int) string {
	counts := map[apply.Action]int{}
	for _, c := range cs.Changes {
		counts[c.Action]++
	}
	msg := fmt.Sprintf("%d created, %d configured, %d unchanged, %d pruned", counts[apply.Created], counts[apply.Configured], counts[apply.Unchanged], pruned)
	if kept > 0 {
		msg += fmt.Sprintf(", %d need pruning", kept)
	}
	return msg
}

func hasSyncOption(ds *flotillav1.DesiredState, option string) bool {
	for _, o := range ds.GetSyncPolicy().GetSyncOptions() {
		if strings.EqualFold(o, option) {
			return true
		}
	}
	return false
}

func refObject(ref apply.ObjectRef) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion(strings.TrimPrefix(ref.Group+"/"+ref.Version, "/"))
	obj.SetKind(ref.Kind)
	obj.SetNamespace(ref.Namespace)
	obj.SetName(ref.Name)
	return obj
}
