package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/agent/waves"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// outcome is what a sync means for its worker: the objects it rendered
// (nil for a no-op or a removal), when to retry it (0: not), and its
// error. refused is a desired state the cluster took a newer one than
// (a replay): it changed nothing, and is not the worker's current one.
type outcome struct {
	rendered []*unstructured.Unstructured
	retryIn  time.Duration
	err      error
	refused  bool
}

// sync runs one desired state to completion and reports it. force skips
// the no-op check, so every object is dry-run and what differs written.
// attempt counts the earlier failed attempts of the same desired state.
func (s *Syncer) sync(ctx context.Context, d *Desired, force bool, attempt int64) outcome {
	defer s.releaseMemory()
	spec := newSyncSpec(d.State)
	// The span continues the hub's trace but ends with this sync.
	spanCtx, span := tracer.Start(trace.ContextWithSpanContext(ctx, d.Trace), "agent.sync", trace.WithAttributes(
		attribute.String("flotilla.cluster", spec.cluster), attribute.String("flotilla.app", spec.app),
		attribute.Int64("flotilla.history_id", int64(spec.historyID)), attribute.String("vcs.revision", spec.revision)))
	defer span.End()
	s.mu.Lock()
	previousTrace := s.traces[spec.app]
	s.traces[spec.app] = span.SpanContext()
	s.mu.Unlock()
	log := s.log.With("cluster", spec.cluster, "app", spec.app, "history_id", spec.historyID,
		"revision", spec.revision, "trace_id", span.SpanContext().TraceID().String())

	started := time.Now()
	var res syncResult
	err := s.recovered(spec.app, "syncing", func() error {
		var err error
		res, err = s.run(spanCtx, spec, force)
		return err
	})
	if replayed := (*replayedError)(nil); errors.As(err, &replayed) {
		// Nothing changes: the application's last sync stays its trace.
		s.mu.Lock()
		s.traces[spec.app] = previousTrace
		s.mu.Unlock()
		span.SetStatus(codes.Error, err.Error())
		log.Warn("desired state refused", "reason", flotillav1.ReasonReplayed, "error", err)
		s.refuseReplayed(spanCtx, spec, span.SpanContext().TraceID().String(), replayed)
		return outcome{err: err, refused: true}
	}
	if res.duplicate {
		log.Debug("deletion delivered again; it was carried out before")
		return outcome{}
	}
	retryIn := time.Duration(0)
	if transient(err) {
		retryIn = transientRetryAfter(attempt)
	} else if err != nil {
		retryIn = retryAfter(spec.retry, attempt)
	}
	st := statusOf(spec, res, failure{err: err, attempt: attempt, retryIn: retryIn, now: time.Now()})
	st.StartedAt, st.FinishedAt, st.TraceId = timestamppb.New(started), timestamppb.Now(), span.SpanContext().TraceID().String()
	s.count(st, res, err)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		log.Error("sync failed", "error", err, "attempt", attempt+1, "retry_in", retryIn.String())
		s.report(spanCtx, st, flotillav1.EventType_EVENT_TYPE_WARNING, flotillav1.ReasonSyncFailed, st.Message)
		return outcome{retryIn: retryIn, err: err}
	}
	if spec.deletion == nil {
		s.watch(ctx, res.objects)
	}
	log.Info("synced", "message", st.Message, "health", st.Health.String())
	s.report(spanCtx, st, flotillav1.EventType_EVENT_TYPE_NORMAL, flotillav1.ReasonSyncSucceeded, st.Message)
	if res.noop || spec.deletion != nil {
		return outcome{}
	}
	return outcome{rendered: res.objects}
}

// run does the work of a sync and returns what it did. A desired state
// older than the one the inventory records is refused (a *replayedError)
// before anything is done.
func (s *Syncer) run(ctx context.Context, spec syncSpec, force bool) (syncResult, error) {
	inv, err := s.deps.Inventories.Load(ctx, spec.app)
	if err != nil {
		return syncResult{}, err
	}
	if duplicate, err := checkHistory(spec, inv); err != nil || duplicate {
		return syncResult{duplicate: duplicate}, err
	}
	if spec.deletion != nil {
		return s.remove(ctx, spec, inv)
	}
	if inv.Applied == spec.applied && !force {
		return s.noop(ctx, spec, inv), nil
	}
	if err := s.accept(ctx, spec, inv); err != nil {
		return syncResult{}, err
	}
	rendered, err := s.renderDesired(ctx, spec)
	if err != nil {
		return syncResult{}, err
	}
	plan, err := waves.Build(rendered)
	if err != nil {
		return syncResult{}, err
	}
	// From here on a failure names the objects it left unapplied.
	planned := syncResult{objects: plan.Resources}
	if err := s.refuseUnsupported(rendered); err != nil {
		return planned, err
	}
	if err := s.refuseForbidden(spec, rendered); err != nil {
		return planned, err
	}
	// Before anything is written: an application that prunes meanwhile
	// leaves to this one what it now wants.
	s.want(spec, plan.Resources)
	if err := s.sharedResources(ctx, spec, plan.Resources); err != nil {
		return planned, err
	}
	warnings, err := s.respectIgnored(ctx, spec, plan.Resources)
	if err != nil {
		return planned, err
	}
	// Watch before writing, so no change after the writes is missed.
	s.watch(ctx, plan.Resources)
	if err := s.createNamespace(ctx, spec, plan.Resources); err != nil {
		return planned, err
	}
	var res syncResult
	if plan.Simple() {
		res, err = s.applyAll(ctx, spec, plan.Resources, inv)
	} else {
		res, err = s.applyWaves(ctx, spec, plan, inv)
	}
	if err != nil {
		return res, err
	}
	res.warnings = append(slices.Clone(spec.ds.GetWarnings()), warnings...)
	res.health = s.healthOf(ctx, plan.Resources)
	return res, nil
}

// refuseUnsupported fails a sync that has an object of a kind the agent
// refuses (Options.Unsupported), naming each, before anything is written.
func (s *Syncer) refuseUnsupported(objs []*unstructured.Unstructured) error {
	var refused []error
	for _, o := range objs {
		ref := apply.RefOf(o)
		if why, ok := s.opts.Unsupported[ref.GroupKind()]; ok {
			refused = append(refused, &apply.ObjectError{Ref: ref, Action: "sync", Err: errors.New(why)})
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("nothing was applied: %w", joinSemicolon(refused))
	}
	return nil
}

// applyAll applies objects in one go, then prunes and records them.
func (s *Syncer) applyAll(ctx context.Context, spec syncSpec, objs []*unstructured.Unstructured, inv *inventory.Inventory) (syncResult, error) {
	_, span := tracer.Start(ctx, "agent.apply")
	cs, err := s.deps.Cluster.ApplyAll(ctx, objs, spec.applyOptions()...)
	span.End()
	res := syncResult{objects: objs, applied: cs.Changes}
	if err != nil {
		return res, fmt.Errorf("nothing of history %d was applied where the dry-run failed: %w", spec.historyID, err)
	}
	pruned, err := s.pruneAndRecord(ctx, spec, inv, objs)
	res.pruned, res.leftTo = pruned.changes, pruned.leftTo
	return res, err
}

// noop handles a desired state applied before (after an agent restart, or
// a republish): nothing is rendered or written. Health starts from the last
// status reported for this history id and is then re-observed by the health
// follower; without one it is read now.
func (s *Syncer) noop(ctx context.Context, spec syncSpec, inv *inventory.Inventory) syncResult {
	res := syncResult{noop: true, objects: apply.Objects(inv.Objects), warnings: spec.ds.GetWarnings()}
	if prev, err := s.deps.Reporter.LastStatus(ctx, spec.cluster, spec.app); err == nil && prev.GetHistoryId() == spec.historyID &&
		prev.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_UNSPECIFIED {
		res.previous = prev
		return res
	}
	res.health = s.healthOf(ctx, res.objects)
	return res
}

// appliedID identifies a desired state for the inventory's no-op check.
func appliedID(ds *flotillav1.DesiredState) string {
	return fmt.Sprintf("%d/%s", ds.GetHistoryId(), ds.GetArtifact().GetDigest())
}

// applyOptions carry the sync options of the application, or of an
// object, that change how objects are written: Replace=true replaces them
// whole, SkipDryRunOnMissingResource=true skips the dry-run of kinds the
// cluster does not know yet.
func (spec syncSpec) applyOptions() []apply.Option {
	replace, skip := spec.options.replace, spec.options.skipDryRunOnMissing
	return []apply.Option{
		apply.Replace(func(o *unstructured.Unstructured) bool { return replace || objectOptionsOf(o).replace }),
		apply.SkipDryRunOnMissingResource(func(o *unstructured.Unstructured) bool { return skip || objectOptionsOf(o).skipDryRun }),
	}
}

// createNamespace creates the destination namespace with CreateNamespace=true,
// as Argo CD does: it is not part of the application (several applications
// share a namespace), so it is never pruned or deleted with one. A chart
// that renders its own Namespace manages it instead.
func (s *Syncer) createNamespace(ctx context.Context, spec syncSpec, objs []*unstructured.Unstructured) error {
	if spec.namespace == "" || !spec.options.createNamespace {
		return nil
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1" && o.GetName() == spec.namespace {
			return nil
		}
	}
	nsObj := apply.ObjectRef{Version: "v1", Kind: "Namespace", Name: spec.namespace}.Object()
	if m := spec.ds.GetSyncPolicy().GetManagedNamespaceMetadata(); m != nil {
		// managedNamespaceMetadata: applied with the namespace, so the
		// agent owns these labels and annotations as Argo CD does.
		nsObj.SetLabels(m.GetLabels())
		nsObj.SetAnnotations(m.GetAnnotations())
	}
	if _, err := s.deps.Cluster.ApplyAll(ctx, []*unstructured.Unstructured{nsObj}); err != nil {
		return fmt.Errorf("CreateNamespace=true: %w", err)
	}
	return nil
}

// sharedResources names the objects among objs that another application
// manages (their AppLabel names it): with FailOnSharedResource=true the
// sync fails on them rather than take them over.
func (s *Syncer) sharedResources(ctx context.Context, spec syncSpec, objs []*unstructured.Unstructured) error {
	if !spec.options.failOnSharedResource {
		return nil
	}
	live, err := s.deps.Cluster.Live(ctx, objs)
	if err != nil {
		return err
	}
	var shared []error
	for _, o := range objs {
		if l := live[apply.RefOf(o).Key()]; l != nil {
			if owner := l.GetLabels()[AppLabel]; owner != "" && owner != appkey.LabelValue(spec.app) {
				shared = append(shared, fmt.Errorf("%s is managed by application %s", apply.RefOf(o), owner))
			}
		}
	}
	if len(shared) > 0 {
		return fmt.Errorf("FailOnSharedResource=true: nothing was applied: %w", joinSemicolon(shared))
	}
	return nil
}

// joinSemicolon joins errors on one line, "a; b".
func joinSemicolon(errs []error) error { return semicolonJoined(errs) }

// semicolonJoined is errors on one line, "; " between them, each still
// reachable by errors.As (a failed object's *apply.ObjectError).
type semicolonJoined []error

func (e semicolonJoined) Error() string {
	msg := ""
	for i, err := range e {
		if i > 0 {
			msg += "; "
		}
		msg += err.Error()
	}
	return msg
}

func (e semicolonJoined) Unwrap() []error { return e }
