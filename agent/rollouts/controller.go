package rollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
)

// Resources the controller works with.
var (
	rsGVR       = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	svcGVR      = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	secretGVR   = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	deployGVR   = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	runGVR      = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysisruns"}
	templateGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysistemplates"}
	clusterGVR  = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "clusteranalysistemplates"}
	httpRoutes  = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
)

// HashLabel marks the ReplicaSets, pods and service selectors of one pod
// template, as Argo Rollouts marks them.
const HashLabel = "rollouts-pod-template-hash"

// fieldManager owns what the controller writes.
const fieldManager = "flotilla-rollouts"

// Options configure the controller.
type Options struct {
	// Measurer takes analysis measurements (analysis.Providers{} in
	// production).
	Measurer analysis.Measurer
	// OnChange is called after a Rollout's status changed, so the agent
	// reports it.
	OnChange func(ro *unstructured.Unstructured)
	// TraceParent gives the span context a Rollout's steps are traced in
	// (the sync that applied it); nil or invalid starts new traces.
	TraceParent func(ro *unstructured.Unstructured) trace.SpanContext
	// Tracing makes the step and measurement spans (nil: the global
	// provider).
	Tracing trace.TracerProvider
	// Resync re-reconciles every Rollout this often, beside the watches.
	Resync time.Duration
	// Workers reconcile different Rollouts in parallel.
	Workers int
}

// DefaultOptions are the controller's defaults.
func DefaultOptions() Options {
	return Options{Measurer: analysis.Providers{}, Resync: 30 * time.Second, Workers: 4}
}

// Controller is the agent's Argo Rollouts controller: it runs canary and
// blue-green rollouts, their analysis and operators' actions, keeping all
// of a rollout's progress in the Rollout's and its AnalysisRuns' status so
// a restarted agent resumes where the last one stopped.
type Controller struct {
	client dynamic.Interface
	opts   Options
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[cache.ObjectName]
	steps  stepClock
	tracer trace.Tracer

	// workloads maps each Deployment a workloadRef names to the Rollouts
	// naming it, so a change of its template reaches them. Deployments are
	// watched from the first workloadRef on (most clusters have many
	// Deployments and no workloadRef): the first one closes
	// workloadNamed, on which Run waits to start the watch in its context.
	mu            sync.Mutex
	workloads     map[cache.ObjectName]map[cache.ObjectName]bool
	workloadNamed chan struct{}
	nameWorkload  sync.Once
}

// NewController creates a controller.
func NewController(client dynamic.Interface, opts Options, log *slog.Logger) *Controller {
	if opts.Tracing == nil {
		opts.Tracing = otel.GetTracerProvider()
	}
	return &Controller{client: client, opts: opts, log: log, steps: stepClock{started: map[string]time.Time{}},
		tracer:        opts.Tracing.Tracer("github.com/flotilla-dev/flotilla/agent/rollouts"),
		workloads:     map[cache.ObjectName]map[cache.ObjectName]bool{},
		workloadNamed: make(chan struct{}),
		queue:         workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]())}
}

// Run watches Rollouts and their ReplicaSets and reconciles them until ctx
// ends.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	rollouts := dynamicinformer.NewDynamicSharedInformerFactory(c.client, c.opts.Resync)
	owned := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.client, c.opts.Resync, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = HashLabel
	})
	enqueue := func(obj any) {
		if key, err := cache.ObjectToName(obj); err == nil {
			c.queue.Add(key)
		}
	}
	enqueueOwner := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(u); ref != nil && ref.Kind == "Rollout" {
			c.queue.Add(cache.ObjectName{Namespace: u.GetNamespace(), Name: ref.Name})
		}
	}
	if _, err := rollouts.ForResource(GVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: c.forget,
	}); err != nil {
		return err
	}
	if _, err := owned.ForResource(rsGVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueOwner, UpdateFunc: func(_, o any) { enqueueOwner(o) }, DeleteFunc: enqueueOwner,
	}); err != nil {
		return err
	}
	rollouts.Start(ctx.Done())
	owned.Start(ctx.Done())
	for gvr, ok := range rollouts.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("watch %s: cache did not sync", gvr.Resource)
		}
	}
	workers := max(c.opts.Workers, 1)
	for range workers {
		go func() {
			for c.processNext(ctx) {
			}
		}()
	}
	// Deployments are watched once a workloadRef names one (see
	// referWorkload), in this context.
	workloadNamed := c.workloadNamed
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-workloadNamed:
			workloadNamed = nil // watch once
			if err := c.watchWorkloads(ctx); err != nil {
				c.log.Error("cannot watch Deployments for workloadRef", "error", err)
			}
		}
	}
}

// forget drops what the controller keeps of a deleted Rollout.
func (c *Controller) forget(obj any) {
	key, err := cache.DeletionHandlingObjectToName(obj)
	if err != nil {
		return
	}
	c.steps.forgetRollout(key.Namespace, key.Name)
	c.referWorkload(key, "")
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	after, err := c.recoverReconcile(ctx, key, c.Reconcile)
	c.requeue(key, after, err)
	return true
}

// requeue puts key back on the queue as the result of its reconcile asks.
func (c *Controller) requeue(key cache.ObjectName, after time.Duration, err error) {
	switch {
	case apierrors.IsConflict(err):
		c.queue.AddRateLimited(key) // someone (an operator's action) wrote first: read again
	case errors.Is(err, errReconcilePanicked):
		c.queue.AddRateLimited(key) // logged, with its stack, by recoverReconcile
	case err != nil:
		c.log.Error("rollout", "namespace", key.Namespace, "rollout", key.Name, "error", err)
		c.queue.AddRateLimited(key)
	default:
		c.queue.Forget(key)
		if after > 0 {
			c.queue.AddAfter(key, after)
		}
	}
}

// Reconcile moves one Rollout on as far as it can now, writes its status
// and returns when it wants to be looked at again (0: on the next change).
func (c *Controller) Reconcile(ctx context.Context, namespace, name string) (time.Duration, error) {
	obj, err := c.client.Resource(GVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil || obj.GetDeletionTimestamp() != nil {
		return 0, err
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", "replicas"); !found {
		return 0, c.defaultReplicas(ctx, obj)
	}
	if parent := c.traceParent(obj); parent.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, parent)
	}
	r := &rolloutCtx{c: c, obj: obj, now: time.Now()}
	r.ro, err = parse(obj)
	if r.ro == nil {
		return 0, err
	}
	r.st = *r.ro.Status.deepCopy()
	if err == nil {
		err = r.reconcile(ctx)
		if transient(err) || ctx.Err() != nil {
			// The API server's trouble, or the controller stopping: try
			// again soon, and never write a status of it (a stopping agent
			// could mark its Rollouts InvalidSpec: context canceled).
			return 0, err
		}
	}
	if err != nil {
		// A spec or a reference that is wrong: say so, and look again
		// later (a template may be created, a Service applied).
		r.st.Phase, r.st.Message = PhaseDegraded, "InvalidSpec: "+err.Error()
		r.wakeIn(30 * time.Second)
	}
	if err := r.writeStatus(ctx); err != nil {
		return 0, err
	}
	if r.next.IsZero() {
		return 0, nil
	}
	return max(time.Until(r.next), 10*time.Millisecond), nil
}

// defaultReplicas writes one replica into a spec without any, as Argo
// Rollouts does: the scale subresource, and with it an HPA, fails on a
// missing spec.replicas. Git leaves the field to the HPA, so it is not
// Git's to fight over. The update's event brings the rollout back.
func (c *Controller) defaultReplicas(ctx context.Context, obj *unstructured.Unstructured) error {
	if err := unstructured.SetNestedField(obj.Object, int64(1), "spec", "replicas"); err != nil {
		return err
	}
	_, err := c.client.Resource(GVR).Namespace(obj.GetNamespace()).Update(ctx, obj, metav1.UpdateOptions{FieldManager: fieldManager})
	return err
}

// transient tells the API server's errors (worth retrying at once) from
// the rollout's own (a field, a missing template or Service).
func transient(err error) bool {
	var status apierrors.APIStatus
	return err != nil && errors.As(err, &status) && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err)
}

func (c *Controller) traceParent(obj *unstructured.Unstructured) trace.SpanContext {
	if c.opts.TraceParent == nil {
		return trace.SpanContext{}
	}
	return c.opts.TraceParent(obj)
}

// rolloutCtx is one reconcile of one Rollout. The context of the
// reconcile is not kept here: each method that calls the API server takes
// it as its first parameter.
type rolloutCtx struct {
	c   *Controller
	obj *unstructured.Unstructured
	ro  *Rollout
	st  Status // the status being built
	now time.Time
	// next is the earliest time the rollout wants another look.
	next time.Time

	template map[string]any
	hash     string
	// workload is the Deployment the workloadRef names, when it has one.
	workload *unstructured.Unstructured
	// fastRollback: the revision is an earlier one within the rollback
	// window, rolled out at once with no steps and no analysis.
	fastRollback bool
	newRS        *unstructured.Unstructured
	stableRS     *unstructured.Unstructured
	// others are the rollout's ReplicaSets that are neither.
	others []*unstructured.Unstructured
}

func (r *rolloutCtx) wakeAt(t time.Time) {
	if !t.IsZero() && (r.next.IsZero() || t.Before(r.next)) {
		r.next = t
	}
}

func (r *rolloutCtx) wakeIn(d time.Duration) { r.wakeAt(r.now.Add(d)) }

// reconcile runs the strategy.
func (r *rolloutCtx) reconcile(ctx context.Context) error {
	if err := r.loadReplicaSets(ctx); err != nil {
		return err
	}
	if r.st.CurrentPodHash != r.hash {
		// A new revision: it starts from the first step, whatever the last
		// one did (an abort is for the revision it stopped).
		r.st.CurrentPodHash = r.hash
		r.c.steps.forgetRollout(r.obj.GetNamespace(), r.obj.GetName())
		r.st.PauseConditions, r.st.ControllerPause, r.st.Abort, r.st.AbortedAt, r.st.PromoteFull = nil, false, false, nil, false
		r.st.CurrentStepIndex = nil
		r.st.BlueGreen.ScaleUpPreviewCheckPoint = false
		r.st.Canary.CurrentStepAnalysisRunStatus, r.st.Canary.CurrentBackgroundAnalysisRunStatus = nil, nil
		r.st.BlueGreen.PrePromotionAnalysisRunStatus, r.st.BlueGreen.PostPromotionAnalysisRunStatus = nil, nil
	}
	if r.st.StableRS == "" || r.stableRS == nil && r.st.StableRS != r.hash {
		// The first revision (or a stable ReplicaSet that is gone) goes
		// straight to full size: there is nothing to compare it with.
		r.st.StableRS = r.hash
		r.stableRS = r.newRS
	}
	r.fastRollback = r.rollbackWithinWindow()
	var err error
	if r.ro.Spec.Strategy.Canary != nil {
		err = r.canary(ctx)
	} else {
		err = r.blueGreen(ctx)
	}
	if err != nil {
		return err
	}
	r.counts()
	r.progress()
	if err := r.scaleDownWorkload(ctx); err != nil {
		return err
	}
	return r.cleanup(ctx)
}

// promotingFully reports whether the revision skips its steps, pauses and
// analysis: an operator's full promotion, or a rollback within the
// rollback window.
func (r *rolloutCtx) promotingFully() bool {
	return r.st.PromoteFull || r.fastRollback
}

// writeStatus writes the status if it changed, and tells OnChange.
func (r *rolloutCtx) writeStatus(ctx context.Context) error {
	r.st.ObservedGeneration = fmt.Sprint(r.obj.GetGeneration())
	data, err := json.Marshal(r.st)
	if err != nil {
		return err
	}
	var status map[string]any
	if err := json.Unmarshal(data, &status); err != nil {
		return err
	}
	old, _, _ := unstructured.NestedMap(r.obj.Object, "status")
	if apiequality.Semantic.DeepEqual(old, status) {
		return nil
	}
	obj := r.obj.DeepCopy()
	obj.Object["status"] = status
	updated, err := r.c.client.Resource(GVR).Namespace(obj.GetNamespace()).UpdateStatus(ctx, obj, metav1.UpdateOptions{FieldManager: fieldManager})
	if err != nil {
		return fmt.Errorf("rollout %s/%s status: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	if r.st.Phase != r.ro.Status.Phase || r.st.Message != r.ro.Status.Message {
		r.c.log.Info("rollout", "namespace", obj.GetNamespace(), "rollout", obj.GetName(), "phase", r.st.Phase, "step", stepText(r.st.CurrentStepIndex),
			"message", r.st.Message)
	}
	if r.c.opts.OnChange != nil {
		r.c.opts.OnChange(updated)
	}
	return nil
}

func stepText(i *int32) string {
	if i == nil {
		return ""
	}
	return fmt.Sprint(*i)
}

func (s *Status) deepCopy() *Status {
	data, _ := json.Marshal(s)
	var out Status
	_ = json.Unmarshal(data, &out)
	return &out
}

// steady is the promoted state of either strategy: no abort and no
// analysis, the current version at full size behind services, every other
// version scaled down after delay.
func (r *rolloutCtx) steady(ctx context.Context, services []string, delay time.Duration) error {
	r.st.Abort, r.st.AbortedAt, r.st.PromoteFull = false, nil, false
	r.unpause()
	if err := r.terminateRuns(ctx); err != nil {
		return err
	}
	if err := r.scale(ctx, r.newRS, r.ro.replicas()); err != nil {
		return err
	}
	if err := r.keepScaled(ctx, r.newRS); err != nil {
		return err
	}
	for _, svc := range services {
		if err := r.pointService(ctx, svc, r.hash); err != nil {
			return err
		}
	}
	if err := r.scaleDownOthers(ctx, delay); err != nil {
		return err
	}
	switch {
	case r.ro.Spec.Paused:
		r.st.Phase, r.st.Message = PhasePaused, "manually paused"
	case settled(r.newRS, r.ro.replicas()):
		r.st.Phase, r.st.Message = PhaseHealthy, ""
	default:
		r.st.Phase, r.st.Message = PhaseProgressing, fmt.Sprintf("waiting for %d of %d replicas to be available", available(r.newRS), r.ro.replicas())
	}
	return nil
}

// pause adds a pause condition (once) and marks the pause as the
// controller's, as Argo Rollouts does; a promote removes the condition.
func (r *rolloutCtx) pause(reason string) {
	for _, p := range r.st.PauseConditions {
		if p.Reason == reason {
			return
		}
	}
	r.st.PauseConditions = append(r.st.PauseConditions, PauseCondition{Reason: reason, StartTime: metav1.Time{Time: r.now}})
	r.st.ControllerPause = true
}

// pausedSince is when the pause with reason began, or nil.
func (r *rolloutCtx) pausedSince(reason string) *time.Time {
	for _, p := range r.st.PauseConditions {
		if p.Reason == reason {
			return &p.StartTime.Time
		}
	}
	return nil
}

func (r *rolloutCtx) unpause() {
	r.st.PauseConditions, r.st.ControllerPause = nil, false
}

// markAborted makes the status of an aborted revision Degraded, its message
// saying so and keeping the reason abort gave.
func (r *rolloutCtx) markAborted() {
	if !strings.HasPrefix(r.st.Message, "RolloutAborted") {
		reason := ""
		if r.st.Message != "" {
			reason = ": " + r.st.Message
		}
		r.st.Message = "RolloutAborted: rollout aborted update to revision " + r.hash + reason
	}
	r.st.Phase = PhaseDegraded
}

// abort stops the revision: reason says why, for the status.
func (r *rolloutCtx) abort(reason string) {
	r.st.Abort = true
	r.st.AbortedAt = &metav1.Time{Time: r.now}
	r.st.PauseConditions, r.st.ControllerPause = nil, false
	r.st.Message = reason
}
