package apply

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/flotilla-dev/flotilla/internal/render"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// The package's tests share one kube-apiserver (a start costs about ten
// seconds); each test works in a namespace of its own (newNamespace) and
// names its cluster-scoped objects after itself. No test runs in parallel:
// some count the requests of a manager of their own (recordingManager).
var (
	cluster *testenv.Cluster
	// manager is a Manager of cluster with the default options.
	manager *Manager
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) (code int) {
	env := &mainEnv{}
	env.ctx, env.cancel = context.WithCancel(context.Background())
	defer env.stop()
	defer env.recoverFatal(&code)
	cluster = testenv.StartCluster(env, testenv.ClusterOptions{Name: "apply"})
	var err error
	if manager, err = NewManager(cluster.Config, DefaultOptions()); err != nil {
		env.Fatalf("new manager: %v", err)
	}
	return m.Run()
}

// mainEnv is the testenv.TB of TestMain: its cleanups (the cluster's stop)
// run after every test, newest first, and Fatal ends the run through them.
type mainEnv struct {
	ctx      context.Context
	cancel   context.CancelFunc
	cleanups []func()
	failed   bool
}

// mainFatal is the panic Fatal raises and recoverFatal turns into exit 1.
type mainFatal string

func (e *mainEnv) Helper()                  {}
func (e *mainEnv) Cleanup(f func())         { e.cleanups = append(e.cleanups, f) }
func (e *mainEnv) Context() context.Context { return e.ctx }
func (e *mainEnv) Failed() bool             { return e.failed }

func (e *mainEnv) TempDir() string {
	dir, err := os.MkdirTemp("", "flotilla-apply-test-")
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (e *mainEnv) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (e *mainEnv) Errorf(format string, args ...any) {
	e.failed = true
	e.Logf(format, args...)
}

func (e *mainEnv) Fatal(args ...any) {
	e.failed = true
	panic(mainFatal(fmt.Sprint(args...)))
}

func (e *mainEnv) Fatalf(format string, args ...any) {
	e.failed = true
	panic(mainFatal(fmt.Sprintf(format, args...)))
}

func (e *mainEnv) recoverFatal(code *int) {
	r := recover()
	if r == nil {
		return
	}
	msg, ok := r.(mainFatal)
	if !ok {
		panic(r)
	}
	fmt.Fprintln(os.Stderr, msg)
	*code = 1
}

func (e *mainEnv) stop() {
	e.cancel()
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// configMaps is the resource most tests use: it has no controller, and
// its data is free-form.
var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

var namespaces atomic.Int64

// newNamespace creates a namespace named after the test. It is not deleted:
// without kube-controller-manager a deleted namespace stays Terminating, and
// the cluster goes when the package's tests end.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := uniqueName(t)
	cluster.CreateNamespace(t, name)
	return name
}

var notLabel = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName is a DNS label made of the test's name and a counter, for
// namespaces and cluster-scoped objects.
func uniqueName(t *testing.T) string {
	base := strings.Trim(notLabel.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 50 {
		base = strings.TrimRight(base[:50], "-")
	}
	return fmt.Sprintf("%s-%d", base, namespaces.Add(1))
}

// decode reads a YAML stream with $NS replaced by namespace.
func decode(t *testing.T, namespace, manifests string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := render.Decode([]byte(strings.ReplaceAll(manifests, "$NS", namespace)))
	if err != nil {
		t.Fatalf("manifests: %v", err)
	}
	return objs
}

// decodeOne is decode of a stream of one object.
func decodeOne(t *testing.T, namespace, manifest string) *unstructured.Unstructured {
	t.Helper()
	objs := decode(t, namespace, manifest)
	if len(objs) != 1 {
		t.Fatalf("manifest has %d objects, want 1", len(objs))
	}
	return objs[0]
}

// getLive reads the live object of ref, or nil when there is none.
func getLive(t *testing.T, ref ObjectRef) *unstructured.Unstructured {
	t.Helper()
	ri, err := manager.Client(ref.Object())
	if err != nil {
		t.Fatalf("client of %s: %v", ref, err)
	}
	obj, err := ri.Get(t.Context(), ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	return obj
}

// mustApply applies objs with the shared manager, failing the test on error.
func mustApply(t *testing.T, objs ...*unstructured.Unstructured) *ChangeSet {
	t.Helper()
	cs, err := manager.ApplyAll(t.Context(), objs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return cs
}

// objectErrorRefs are the objects of every ObjectError in err's tree.
func objectErrorRefs(err error) []ObjectRef {
	var refs []ObjectRef
	var walk func(error)
	walk = func(err error) {
		if oe, ok := err.(*ObjectError); ok {
			refs = append(refs, oe.Ref)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return refs
}

// request is one request a recordingManager made.
type request struct {
	Method string
	Path   string
	DryRun bool
}

// write reports whether the request changes what the server stores.
func (r request) write() bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead && !r.DryRun
}

// requestLog records the requests of a manager.
type requestLog struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []request
}

func (l *requestLog) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.reqs = append(l.reqs, request{Method: req.Method, Path: req.URL.Path, DryRun: req.URL.Query().Has("dryRun")})
	l.mu.Unlock()
	return l.next.RoundTrip(req)
}

// matching are the requests recorded so far for which keep is true.
func (l *requestLog) matching(keep func(request) bool) []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []request
	for _, r := range l.reqs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// writes are the recorded requests that wrote.
func (l *requestLog) writes() []request { return l.matching(request.write) }

// reset forgets the requests recorded so far.
func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = nil
}

// recordingManager is a Manager of cluster of the test's own, whose requests
// are recorded: it tells whether a verb wrote, or how it read.
func recordingManager(t *testing.T) (*Manager, *requestLog) {
	t.Helper()
	log := &requestLog{}
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		log.next = rt
		return log
	})
	m, err := NewManager(cfg, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return m, log
}

// testLogger keeps what is logged and prints it if the test fails; a
// goroutine may log after the test ended without panicking.
func testLogger(t *testing.T) *slog.Logger {
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, nil))
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// crdManifest is a CRD of kind in group, with plural kind-lowercased+"s",
// accepting any spec.
func crdManifest(group, kind, scope string) string {
	plural := strings.ToLower(kind) + "s"
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[1]s.%[2]s
spec:
  group: %[2]s
  scope: %[4]s
  names: {kind: %[3]s, plural: %[1]s, singular: %[5]s, listKind: %[3]sList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`, plural, group, kind, scope, strings.ToLower(kind))
}

// fieldOf is testenv.Field of obj, or "" when obj is nil.
func fieldOf(obj *unstructured.Unstructured, fields ...string) string {
	if obj == nil {
		return ""
	}
	return testenv.Field(obj, fields...)
}
