package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/agent/rollouts"
	"github.com/flotilla-dev/flotilla/internal/artifact"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// memoryArtifacts serve packed test directories by digest.
type memoryArtifacts struct {
	mu   sync.Mutex
	data map[string][]byte
	// unavailable is how many reads to fail next, as a NATS server too
	// busy to answer in time does.
	unavailable int
}

func (a *memoryArtifacts) GetArtifact(_ context.Context, digest string) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unavailable > 0 {
		a.unavailable--
		return nil, fmt.Errorf("artifact %s: %w", digest, context.DeadlineExceeded)
	}
	if d, ok := a.data[digest]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("artifact %s: not found", digest)
}

// recordingReporter keeps every status and event the syncer reports.
type recordingReporter struct {
	mu       sync.Mutex
	statuses map[string]*flotillav1.AppStatus
	events   []*flotillav1.Event
}

func (r *recordingReporter) PutStatus(_ context.Context, st *flotillav1.AppStatus) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses[st.GetApp()] = st
	return nil
}

func (r *recordingReporter) Event(_ context.Context, ev *flotillav1.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recordingReporter) LastStatus(_ context.Context, _, app string) (*flotillav1.AppStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.statuses[app]; ok {
		return st, nil
	}
	return nil, errors.New("no status")
}

func (r *recordingReporter) status(app string) *flotillav1.AppStatus {
	st, _ := r.LastStatus(context.Background(), "", app)
	return st
}

func (r *recordingReporter) event(app, reason string) *flotillav1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.GetApp() == app && ev.GetReason() == reason {
			return ev
		}
	}
	return nil
}

// panickyCluster is the real engine, except that applying an object
// labelled flotilla.dev/app=boom panics, as a bug in one app's input would,
// and that reading an object faults names unreadable fails.
type panickyCluster struct {
	*apply.Manager
	faults *faults
}

func (c panickyCluster) ApplyAll(ctx context.Context, objs []*unstructured.Unstructured, opts ...apply.Option) (*apply.ChangeSet, error) {
	for _, o := range objs {
		if o.GetLabels()[AppLabel] == "boom" {
			panic("boom: a bug met this app's input")
		}
	}
	return c.Manager.ApplyAll(ctx, objs, opts...)
}

func (c panickyCluster) Live(ctx context.Context, objs []*unstructured.Unstructured) (map[string]*unstructured.Unstructured, error) {
	for _, o := range objs {
		if c.faults.isUnreadable(o.GetName()) {
			return nil, fmt.Errorf("get %s: the server is currently unable to handle the request (injected)", apply.RefOf(o))
		}
	}
	return c.Manager.Live(ctx, objs)
}

// heldInventories are the real inventories, except that loading the
// inventory of an application faults holds waits until it is released:
// that application's sync starts, but renders nothing yet.
type heldInventories struct {
	*inventory.Store
	faults *faults
}

func (i heldInventories) Load(ctx context.Context, app string) (*inventory.Inventory, error) {
	if held := i.faults.heldOf(app); held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return i.Store.Load(ctx, app)
}

// faults are what a test makes go wrong in the syncer's dependencies.
type faults struct {
	mu         sync.Mutex
	unreadable map[string]bool          // object names whose read fails
	held       map[string]chan struct{} // applications whose syncs wait
}

func (f *faults) isUnreadable(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unreadable[name]
}

// setUnreadable makes reading an object named name fail until the test ends.
func (f *faults) setUnreadable(t *testing.T, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unreadable[name] = true
	t.Cleanup(func() { f.clearUnreadable(name) })
}

func (f *faults) clearUnreadable(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.unreadable, name)
}

func (f *faults) heldOf(app string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[app]
}

// hold makes app's syncs wait before they render, until the returned
// release is called (at the latest when the test ends).
func (f *faults) hold(t *testing.T, app string) (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.held[app] = ch
	release = sync.OnceFunc(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.held, app)
		close(ch)
	})
	t.Cleanup(release)
	return release
}

type syncerEnv struct {
	cluster   *testenv.Cluster
	manager   *apply.Manager
	faults    *faults
	inventory *inventory.Store
	artifacts *memoryArtifacts
	reporter  *recordingReporter
	syncer    *Syncer
	cacheDir  string
	// lifetime is the running syncer's: its workers run until restart (or
	// the end of the test) stops them.
	lifetime context.Context
	stop     context.CancelFunc
	history  map[string]uint64
}

func startSyncer(t *testing.T) *syncerEnv {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Name: "reconcile"})
	m, err := apply.NewManager(c.Config, apply.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	e := &syncerEnv{cluster: c, manager: m, faults: &faults{unreadable: map[string]bool{}, held: map[string]chan struct{}{}},
		inventory: inventory.NewStore(c.Dynamic, "flotilla-system"), artifacts: &memoryArtifacts{data: map[string][]byte{}},
		reporter: &recordingReporter{statuses: map[string]*flotillav1.AppStatus{}}, history: map[string]uint64{}}
	c.CreateNamespace(t, "flotilla-system")
	e.cacheDir = t.TempDir()
	e.restart()
	t.Cleanup(func() { e.stop() })
	return e
}

// restart stops the syncer, if one runs, and starts a new one on the same
// cluster, inventories, cache and status bucket, as an agent restart does:
// what the old one kept in memory is gone.
func (e *syncerEnv) restart() {
	if e.stop != nil {
		e.stop()
	}
	e.lifetime, e.stop = context.WithCancel(context.Background())
	e.syncer = New(Options{
		Cluster: "test", KubeVersion: "v1.37.2", CacheDir: e.cacheDir, Limits: artifact.DefaultLimits(),
		HealthInterval: 100 * time.Millisecond, HealthTimeout: 30 * time.Second,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), Dependencies{
		Cluster: panickyCluster{Manager: e.manager, faults: e.faults}, Inventories: heldInventories{Store: e.inventory, faults: e.faults},
		Rollouts: rollouts.Summarizer{Client: e.cluster.Dynamic}, Artifacts: e.artifacts, Reporter: e.reporter,
		WaveAnalyses: rollouts.NewWaveAnalyses(e.cluster.Dynamic),
	})
}

// offer packs files as app's next desired state and hands it to the syncer.
func (e *syncerEnv) offer(t *testing.T, app, namespace string, files map[string]string, policy *flotillav1.SyncPolicy) uint64 {
	return e.offerWave(t, app, namespace, files, policy, nil)
}

// offerWave is offer of a desired state a fleet rollout published as
// part of wave (nil: none).
func (e *syncerEnv) offerWave(t *testing.T, app, namespace string, files map[string]string, policy *flotillav1.SyncPolicy, wave *flotillav1.FleetWave) uint64 {
	dir := t.TempDir()
	var names []string
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	data, digest, err := artifact.Pack(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	e.artifacts.mu.Lock()
	e.artifacts.data[digest] = data
	e.artifacts.mu.Unlock()
	e.history[app]++
	e.syncer.Offer(e.lifetime, Desired{State: &flotillav1.DesiredState{
		SchemaVersion: 1, Cluster: "test", App: app, HistoryId: e.history[app],
		Source:      &flotillav1.Source{Commit: fmt.Sprintf("c%d", e.history[app])},
		Artifact:    &flotillav1.Artifact{Digest: digest, Size: int64(len(data)), Root: "."},
		Destination: &flotillav1.Destination{Namespace: namespace}, SyncPolicy: policy, Wave: wave,
	}})
	return e.history[app]
}

// waitStatus waits until app reports history id with a finished phase.
func (e *syncerEnv) waitStatus(t *testing.T, app string, id uint64) *flotillav1.AppStatus {
	t.Helper()
	var st *flotillav1.AppStatus
	testenv.Eventually(t, time.Minute, func() error {
		st = e.reporter.status(app)
		if st.GetHistoryId() != id || st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_UNSPECIFIED {
			return fmt.Errorf("status of %s: %v", app, st)
		}
		return nil
	})
	return st
}

func TestSyncer(t *testing.T) {
	e := startSyncer(t)
	automated := &flotillav1.SyncPolicy{Automated: &flotillav1.Automated{Prune: true, SelfHeal: true}}

	// An artifact the hub's NATS did not serve in time is fetched again,
	// whatever the retry policy (here none, where Argo CD retries no
	// failed sync): the application syncs without a new desired state.
	t.Run("an artifact fetch that fails is retried without a retry policy", func(t *testing.T) {
		e.cluster.CreateNamespace(t, "fetched")
		e.artifacts.mu.Lock()
		e.artifacts.unavailable = 2
		e.artifacts.mu.Unlock()
		id := e.offer(t, "fetched", "fetched", map[string]string{
			"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fetched}\ndata: {k: v}\n",
		}, automated)
		var failed *flotillav1.AppStatus
		testenv.Eventually(t, time.Minute, func() error {
			st := e.reporter.status("fetched")
			if st.GetHistoryId() == id && st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_FAILED && failed == nil {
				failed = st
			}
			if st.GetHistoryId() != id || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
				return fmt.Errorf("status: %s: %s", st.GetPhase(), st.GetMessage())
			}
			return nil
		})
		if failed != nil && !strings.Contains(failed.GetMessage(), "retry") {
			t.Errorf("the failed fetch's status says no retry: %s", failed.GetMessage())
		}
		e.artifacts.mu.Lock()
		defer e.artifacts.mu.Unlock()
		if e.artifacts.unavailable != 0 {
			t.Errorf("%d failing reads left: the sync did not go through them", e.artifacts.unavailable)
		}
	})

	// A small archive travels in the desired state: nothing is fetched
	// (the store does not have it, and a fetch that fails is retried
	// until it succeeds), and inline bytes that do not match the digest
	// are refused, not applied.
	t.Run("an inline archive syncs without a fetch; one not matching its digest is refused", func(t *testing.T) {
		e.cluster.CreateNamespace(t, "inline")
		dir := t.TempDir()
		manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: inline}\ndata: {k: v}\n"
		if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		data, digest, err := artifact.Pack(dir, []string{"cm.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		offer := func(digest string, inline []byte) uint64 {
			e.history["inline"]++
			e.syncer.Offer(e.lifetime, Desired{State: &flotillav1.DesiredState{
				SchemaVersion: 1, Cluster: "test", App: "inline", HistoryId: e.history["inline"],
				Artifact:    &flotillav1.Artifact{Digest: digest, Size: int64(len(inline)), Root: ".", Inline: inline},
				Destination: &flotillav1.Destination{Namespace: "inline"}, SyncPolicy: automated,
			}})
			return e.history["inline"]
		}
		if st := e.waitStatus(t, "inline", offer(digest, data)); st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
			t.Fatalf("inline archive: %s: %s", st.GetPhase(), st.GetMessage())
		}
		if _, err := e.cluster.Dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("inline").Get(t.Context(), "inline", metav1.GetOptions{}); err != nil {
			t.Fatalf("the inline archive's ConfigMap: %v", err)
		}

		// The next archive's digest with the first archive's bytes.
		if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte(strings.ReplaceAll(manifest, "k: v", "k: changed")), 0o600); err != nil {
			t.Fatal(err)
		}
		_, next, err := artifact.Pack(dir, []string{"cm.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		st := e.waitStatus(t, "inline", offer(next, data))
		if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED || !strings.Contains(st.GetMessage(), "digest mismatch") {
			t.Fatalf("inline bytes not matching the digest: %s: %s", st.GetPhase(), st.GetMessage())
		}
	})

	// The crash of issue 13: a Kustomize app's objects carry kyaml's int
	// values, and its hook, its drift check and the full comparison after
	// a restart all deep-copied them.
	t.Run("a Kustomize app with a hook syncs, and its drift is healed", func(t *testing.T) {
		e.cluster.CreateNamespace(t, "kustomized")
		id := e.offer(t, "kustomized", "kustomized", map[string]string{
			"kustomization.yaml": "resources: [service.yaml, hook.yaml]\nlabels: [{pairs: {tier: web}}]\n",
			"service.yaml": `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
`,
			"hook.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: presync
  annotations: {argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/hook-delete-policy: BeforeHookCreation}
data: {n: "1"}
`,
		}, automated)
		st := e.waitStatus(t, "kustomized", id)
		if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED || !strings.Contains(st.GetMessage(), "ran PreSync") {
			t.Fatalf("sync: %s: %s", st.GetPhase(), st.GetMessage())
		}
		services := schema.GroupVersionResource{Version: "v1", Resource: "services"}
		patch := []byte(`{"spec":{"selector":{"app":"other"}}}`)
		if _, err := e.cluster.Dynamic.Resource(services).Namespace("kustomized").Patch(t.Context(), "web", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, time.Minute, func() error {
			if ev := e.reporter.event("kustomized", flotillav1.ReasonDriftCorrected); ev == nil {
				return errors.New("no DriftCorrected event yet")
			}
			svc, err := e.cluster.Dynamic.Resource(services).Namespace("kustomized").Get(t.Context(), "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if app := testenv.Field(svc, "spec", "selector", "app"); app != "web" {
				return fmt.Errorf("selector app=%s, want web back", app)
			}
			return nil
		})
	})

	t.Run("a panic in one app fails that app only", func(t *testing.T) {
		e.cluster.CreateNamespace(t, "boom")
		e.cluster.CreateNamespace(t, "calm")
		cm := func(name string) map[string]string {
			return map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\ndata: {a: b}\n"}
		}
		boom := e.offer(t, "boom", "boom", cm("boom"), automated)
		st := e.waitStatus(t, "boom", boom)
		if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED || !strings.Contains(st.GetMessage(), "internal error while syncing: boom") {
			t.Fatalf("boom: %s: %s", st.GetPhase(), st.GetMessage())
		}
		calm := e.offer(t, "calm", "calm", cm("calm"), automated)
		if st := e.waitStatus(t, "calm", calm); st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
			t.Fatalf("calm after boom's panic: %s: %s", st.GetPhase(), st.GetMessage())
		}
		// The worker of the app that panicked is still alive: its next
		// desired state is taken (and fails the same way).
		next := e.offer(t, "boom", "boom", cm("boom2"), automated)
		if st := e.waitStatus(t, "boom", next); st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED {
			t.Fatalf("boom's next desired state: %s: %s", st.GetPhase(), st.GetMessage())
		}
	})

	// Every hostile manifest of testdata/hostile goes the whole way through
	// the sync loop (render, plan, dry-run, apply) as an app of its own:
	// whatever it holds, the app fails or syncs, with a status, and the
	// agent never panics. The seeds of render's FuzzDecode corpus are in
	// the same directory.
	t.Run("hostile manifests end in a status, never a crash", func(t *testing.T) {
		files, err := filepath.Glob("testdata/hostile/*.yaml")
		if err != nil || len(files) == 0 {
			t.Fatalf("no hostile manifests: %v", err)
		}
		for i, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			app, ns := fmt.Sprintf("hostile-%d", i), fmt.Sprintf("hostile-%d", i)
			e.cluster.CreateNamespace(t, ns)
			id := e.offer(t, app, ns, map[string]string{"manifests.yaml": string(data)}, automated)
			st := e.waitStatus(t, app, id)
			if strings.Contains(st.GetMessage(), "internal error") {
				t.Errorf("%s: %s", f, st.GetMessage())
			}
			t.Logf("%s: %s: %s", filepath.Base(f), st.GetPhase(), st.GetMessage())
		}
	})
}
