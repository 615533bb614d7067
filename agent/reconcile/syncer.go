package reconcile

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/ignore"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

var tracer = otel.Tracer("github.com/flotilla-dev/flotilla/agent/reconcile")

// AppLabel marks every object the agent applies with its application (the
// application's name: one agent serves one cluster, where names are
// unique), so watches and selectors find only managed objects, and an
// application never deletes an object another one has taken over
// (mayDelete).
const AppLabel = "flotilla.dev/app"

// Cluster is the apply engine, as the sync loop uses it. *apply.Manager
// implements it.
type Cluster interface {
	// Normalize gives namespaced objects the default namespace and strips
	// it from cluster-scoped ones.
	Normalize(objs []*unstructured.Unstructured, defaultNamespace string)
	// ApplyAll dry-runs every object and, only if all pass, applies those
	// that differ.
	ApplyAll(ctx context.Context, objs []*unstructured.Unstructured, opts ...apply.Option) (*apply.ChangeSet, error)
	// Diff returns the objects whose live state differs from what applying
	// them would make it.
	Diff(ctx context.Context, objs []*unstructured.Unstructured, rules *ignore.Rules) ([]apply.Drift, error)
	// Live reads the live state of objects, by apply.ObjectRef.Key.
	Live(ctx context.Context, objs []*unstructured.Unstructured) (map[string]*unstructured.Unstructured, error)
	// DeleteAll deletes objects (with apply.IfUnchanged, only those still
	// as read); WaitDeleted waits until they are gone.
	DeleteAll(ctx context.Context, refs []apply.ObjectRef, policy metav1.DeletionPropagation, opts ...apply.DeleteOption) (*apply.ChangeSet, error)
	WaitDeleted(ctx context.Context, refs []apply.ObjectRef, timeout time.Duration) error
	// StartHook creates a hook object and returns it as stored.
	StartHook(ctx context.Context, hook *unstructured.Unstructured, recreate bool, timeout time.Duration) (*unstructured.Unstructured, error)
	// Watch follows the objects of a kind that match a label selector.
	Watch(ctx context.Context, gvk schema.GroupVersionKind, selector string, log *slog.Logger, changed func(watch.EventType, *unstructured.Unstructured)) (schema.GroupVersionResource, error)
}

// Inventories keep what each application owns in the cluster, and the
// highest history id it accepted (a deleted application keeps a
// tombstone). *inventory.Store implements it.
type Inventories interface {
	Load(ctx context.Context, app string) (*inventory.Inventory, error)
	Save(ctx context.Context, inv *inventory.Inventory) error
}

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

// Rollouts summarise a live Argo Rollout's progress for the status.
type Rollouts interface {
	Summarize(ctx context.Context, rollout *unstructured.Unstructured) *flotillav1.RolloutStatus
}

// WaveAnalyses run the analyses that gate fleet rollouts' waves
// (DesiredState.wave.analysis). *rollouts.WaveAnalyses implements it.
type WaveAnalyses interface {
	// Run advances the analysis of ds's wave, creating its run only with
	// start, and returns its status (nil: ds has none, or it has not
	// started) and when it next needs a look (zero: not on a timer).
	Run(ctx context.Context, ds *flotillav1.DesiredState, start bool) (*flotillav1.WaveAnalysisStatus, time.Time, error)
	// Expire ends the runs of ds's application other than ds's own, and
	// deletes the oldest of them.
	Expire(ctx context.Context, ds *flotillav1.DesiredState) error
}

// Dependencies are the parts a Syncer works through.
type Dependencies struct {
	Cluster     Cluster
	Inventories Inventories
	Rollouts    Rollouts
	Artifacts   Artifacts
	Reporter    Reporter
	// WaveAnalyses, when set, run the analyses fleet rollouts ask for.
	WaveAnalyses WaveAnalyses
}

// Options configure a Syncer.
type Options struct {
	Cluster string
	// Unsupported are kinds whose objects fail a sync before anything is
	// written, with the reason given (the agent's rollouts controller
	// refuses Experiments this way).
	Unsupported map[schema.GroupKind]string
	// KubeVersion is the cluster's version, for Helm's .Capabilities.
	KubeVersion string
	// CacheDir holds unpacked artifacts by digest.
	CacheDir string
	Limits   artifact.Limits
	// HealthInterval is how often a wave or hook of a sync is re-checked,
	// and HealthTimeout how long it may take to be healthy (complete).
	// Health itself is followed as objects change, for as long as the
	// application exists.
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
	opts Options
	log  *slog.Logger
	deps Dependencies

	mu   sync.Mutex
	apps map[string]*appWorker
	// labelled maps an AppLabel value to its application, for names too
	// long to be a label value as they are (appkey.LabelValue).
	labelled map[string]string
	// watched are the kinds whose managed objects are watched for drift.
	watched map[schema.GroupKind]bool
	// traces are the span contexts of each application's last sync.
	traces map[string]trace.SpanContext
	// wants are, by application, the objects its newest rendered desired
	// state includes (wantedElsewhere).
	wants map[string]wanted
	// rendering renders another application's desired state once for
	// all the applications that ask what it wants at the same time.
	rendering singleflight.Group
	// release returns freed memory after a burst of syncs.
	release *time.Timer
}

// New creates a Syncer.
func New(opts Options, log *slog.Logger, deps Dependencies) *Syncer {
	return &Syncer{opts: opts, log: log, deps: deps, apps: map[string]*appWorker{}, labelled: map[string]string{},
		watched: map[schema.GroupKind]bool{}, traces: map[string]trace.SpanContext{}, wants: map[string]wanted{}}
}

// Desired is a verified desired state and the trace it came with.
type Desired struct {
	State *flotillav1.DesiredState
	// Trace is the span of the hub's publish, which the sync continues.
	Trace trace.SpanContext
}

// Offer hands a verified desired state to its application's worker. An
// older or repeated history id than offered before is ignored; a newer one
// replaces one still waiting, so a burst of commits costs one sync. One
// older than an entry offered before, or than the one the inventory
// records (the agent restarted since, refused by its sync), is refused and
// reported (reason Replayed).
func (s *Syncer) Offer(ctx context.Context, d Desired) {
	app := d.State.GetApp()
	s.mu.Lock()
	w, ok := s.apps[app]
	if !ok {
		w = newWorker(s, app)
		s.apps[app] = w
		s.labelled[appkey.LabelValue(app)] = app
		go w.run(ctx)
	}
	s.mu.Unlock()
	if newer := w.offer(d); newer != 0 {
		s.refuseReplayed(ctx, newSyncSpec(d.State), d.Trace.TraceID().String(), &replayedError{historyID: d.State.GetHistoryId(), recorded: newer})
	}
}

// worker returns app's worker, or nil before its first desired state.
func (s *Syncer) worker(app string) *appWorker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apps[app]
}

// labelledApp is the application an object's AppLabel names ("" for
// none, or one this agent has not seen).
func (s *Syncer) labelledApp(obj *unstructured.Unstructured) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.labelled[obj.GetLabels()[AppLabel]]
}

// recovered turns a panic of fn into an error, logged with its stack, so
// one application's bad input never takes the agent down with every other
// application of the cluster.
func (s *Syncer) recovered(app, what string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("internal error", "app", app, "during", what, "panic", p, "stack", string(debug.Stack()))
			err = &internalError{during: what, value: p}
		}
	}()
	return fn()
}
