package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// The fixture repository and the hub's secrets, as flotillatest names them.
const (
	repoURL       = flotillatest.RepoURL
	webhookSecret = flotillatest.WebhookSecret
	apiToken      = flotillatest.ViewerToken
	operatorToken = flotillatest.OperatorToken
	adminToken    = flotillatest.AdminToken
)

// hubEnv is a running hub on the fixture repository, and a reader of its
// desired states that knows only the hub's public key, as an agent does.
type hubEnv struct {
	*flotillatest.Hub
	verify *signing.Verifier
}

// startHub starts a hub on the fixture repository, served with basic auth,
// beside a repository that does not exist; it polls rarely, so tests drive
// it with webhooks.
func startHub(t *testing.T) *hubEnv {
	t.Helper()
	h := flotillatest.StartHub(t, flotillatest.HubOptions{GitCredentials: true, Tracing: true,
		Repositories: []flotillatest.Repository{{URL: "https://github.com/your-org/missing", FetchURL: "missing"}}})
	pub, err := signing.ParsePublicKey(h.PublicKeyPEM)
	must(t, err)
	return &hubEnv{Hub: h, verify: signing.NewVerifier(pub)}
}

// desired reads and verifies the newest desired state of (cluster, app).
func (e *hubEnv) desired(t *testing.T, cluster, app string) (*flotillav1.DesiredState, trace.SpanContext, error) {
	t.Helper()
	entry, err := e.Bus.GetDesired(t.Context(), cluster, app)
	if err != nil {
		return nil, trace.SpanContext{}, err
	}
	ds, err := e.verify.Verify(entry.State)
	if err != nil {
		t.Fatalf("%s/%s: signature: %v", cluster, app, err)
	}
	return ds, entry.Trace, nil
}

// waitDesired waits until (cluster, app) has a desired state for which ok
// holds.
func (e *hubEnv) waitDesired(t *testing.T, cluster, app string, ok func(*flotillav1.DesiredState) error) *flotillav1.DesiredState {
	t.Helper()
	var got *flotillav1.DesiredState
	testenv.Eventually(t, 30*time.Second, func() error {
		ds, _, err := e.desired(t, cluster, app)
		if err != nil {
			return err
		}
		if err := ok(ds); err != nil {
			return fmt.Errorf("%s/%s history %d: %w", cluster, app, ds.GetHistoryId(), err)
		}
		got = ds
		return nil
	})
	return got
}

// unpack fetches a desired state's artifact, checks its digest and unpacks it.
func (e *hubEnv) unpack(t *testing.T, ds *flotillav1.DesiredState) string {
	t.Helper()
	data, err := e.Bus.GetArtifact(t.Context(), ds.GetArtifact().GetDigest())
	must(t, err)
	must(t, artifact.Verify(data, ds.GetArtifact().GetDigest()))
	if int64(len(data)) != ds.GetArtifact().GetSize() {
		t.Fatalf("artifact size %d, desired state says %d", len(data), ds.GetArtifact().GetSize())
	}
	dir := t.TempDir()
	must(t, artifact.Unpack(data, dir, artifact.DefaultLimits()))
	return dir
}

func hasHistory(id uint64) func(*flotillav1.DesiredState) error {
	return func(ds *flotillav1.DesiredState) error {
		if ds.GetHistoryId() != id {
			return fmt.Errorf("want history %d", id)
		}
		return nil
	}
}

func TestHubPublishesSignedDesiredState(t *testing.T) {
	e := startHub(t)
	e.Register(t, "prod-eu", map[string]string{"env": "production", "region": "eu"})
	e.Register(t, "staging-1", map[string]string{"env": "staging"})

	first := map[string]*flotillav1.DesiredState{}
	for _, key := range []string{"prod-eu/root-app", "prod-eu/api-service", "prod-eu/worker-service", "prod-eu/ml-inference", "staging-1/api-service", "staging-1/worker-service"} {
		cluster, app, _ := strings.Cut(key, "/")
		first[key] = e.waitDesired(t, cluster, app, hasHistory(1))
	}
	for _, absent := range []string{"staging-1/ml-inference", "staging-1/root-app"} {
		cluster, app, _ := strings.Cut(absent, "/")
		if _, _, err := e.desired(t, cluster, app); !errors.Is(err, bus.ErrNotFound) {
			t.Errorf("%s: want no desired state (production only), got %v", absent, err)
		}
	}

	// Each step starts from the state the steps before it left.
	step := newSteps(t)
	step.run("artifacts hold each environment's files", func(t *testing.T) {
		prod := e.unpack(t, first["prod-eu/api-service"])
		staging := e.unpack(t, first["staging-1/api-service"])
		for _, f := range []string{"charts/api-service/Chart.yaml", "charts/api-service/templates/rollout.yaml", "environments/production/api-service-values.yaml"} {
			mustExist(t, prod, f)
		}
		mustNotExist(t, prod, "environments/staging/api-service-values.yaml")
		mustExist(t, staging, "environments/staging/api-service-values.yaml")
		mustNotExist(t, staging, "environments/production/api-service-values.yaml")
		ml := e.unpack(t, first["prod-eu/ml-inference"])
		mustExist(t, ml, "manifests/ml-inference/base/deployment.yaml")
		mustNotExist(t, ml, "charts/api-service/Chart.yaml")

		ds := first["prod-eu/api-service"]
		if got := ds.GetRender().GetHelm().GetValueFiles(); len(got) != 1 || got[0] != "../../environments/production/api-service-values.yaml" {
			t.Errorf("value files = %v", got)
		}
		if !ds.GetSyncPolicy().GetAutomated().GetSelfHeal() || ds.GetSyncPolicy().GetRetry().GetLimit() != 5 || !ds.GetCascadeOnDelete() {
			t.Errorf("sync policy or finalizer lost: %v, cascade %t", ds.GetSyncPolicy(), ds.GetCascadeOnDelete())
		}
		if ds.GetDestination().GetNamespace() != "production" || first["staging-1/api-service"].GetDestination().GetNamespace() != "staging" {
			t.Errorf("destinations: %v / %v", ds.GetDestination(), first["staging-1/api-service"].GetDestination())
		}
		if _, sc, _ := e.desired(t, "prod-eu", "api-service"); !sc.IsValid() {
			t.Errorf("no W3C trace context travels with the desired state: %v", sc)
		}
	})

	step.run("an unreachable repository is reported without its secrets", func(t *testing.T) {
		ev := waitEvent(t, e.Bus, bus.HubEventsCluster, "_", "GitFetchFailed")
		if !strings.Contains(ev.GetMessage(), "https://github.com/your-org/missing") || strings.Contains(ev.GetMessage(), "git-s3cret") {
			t.Errorf("event %q must name the repository and never a secret", ev.GetMessage())
		}
		resp, err := e.HTTP.Get(e.APIURL + "/metrics")
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, metric := range []string{`flotilla_hub_git_polls_total{repo="https://github.com/your-org/missing",result="error"}`, `flotilla_hub_reconciles_total{result="ok"}`, "flotilla_hub_clusters 2"} {
			if !strings.Contains(string(body), metric) {
				t.Errorf("/metrics lacks %s", metric)
			}
		}
	})

	step.run("bad webhook signature is refused", func(t *testing.T) {
		if code := e.Webhook(t, "wrong-secret"); code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", code)
		}
	})

	step.run("image tag commit republishes exactly the affected app", func(t *testing.T) {
		sha := e.Commit(t, "deploy: api-service 1.4.3", map[string]string{
			"environments/production/api-service-values.yaml": strings.Replace(readFixture(t, "environments/production/api-service-values.yaml"), `tag: "1.4.2"`, `tag: "1.4.3"`, 1),
		})
		if code := e.Webhook(t, webhookSecret); code != http.StatusAccepted {
			t.Fatalf("webhook status %d, want 202", code)
		}
		ds := e.waitDesired(t, "prod-eu", "api-service", hasHistory(2))
		if ds.GetSource().GetCommit() != sha || !strings.Contains(ds.GetSource().GetCommitMessage(), "deploy: api-service 1.4.3") {
			t.Errorf("source = %v, want commit %s", ds.GetSource(), sha)
		}
		values, err := os.ReadFile(filepath.Join(e.unpack(t, ds), "environments/production/api-service-values.yaml"))
		must(t, err)
		if !strings.Contains(string(values), `tag: "1.4.3"`) {
			t.Errorf("artifact holds the old tag:\n%s", values)
		}
		for key, prev := range first {
			if key == "prod-eu/api-service" {
				continue
			}
			cluster, app, _ := strings.Cut(key, "/")
			got, _, err := e.desired(t, cluster, app)
			must(t, err)
			if got.GetHistoryId() != prev.GetHistoryId() {
				t.Errorf("%s was republished (history %d → %d) by a commit that does not touch it", key, prev.GetHistoryId(), got.GetHistoryId())
			}
		}
	})

	step.run("malformed commit is reported and keeps the last good state", func(t *testing.T) {
		e.Commit(t, "break the worker chart", map[string]string{
			"charts/worker-service/templates/deployment.yaml": "{{ .Values.image.tag | nosuchfunction }}\n",
		})
		if code := e.Webhook(t, webhookSecret); code != http.StatusAccepted {
			t.Fatalf("webhook status %d", code)
		}
		ev := waitEvent(t, e.Bus, bus.HubEventsCluster, "worker-service", "AppInvalid")
		for _, want := range []string{"worker-service", "charts/worker-service/templates/deployment.yaml", "nosuchfunction"} {
			if !strings.Contains(ev.GetMessage(), want) {
				t.Errorf("error event %q does not name %q", ev.GetMessage(), want)
			}
		}
		for _, cluster := range []string{"prod-eu", "staging-1"} {
			got, _, err := e.desired(t, cluster, "worker-service")
			must(t, err)
			if got.GetDeletion() != nil || got.GetHistoryId() != first[cluster+"/worker-service"].GetHistoryId() {
				t.Errorf("%s/worker-service changed after a broken commit: history %d, deletion %v", cluster, got.GetHistoryId(), got.GetDeletion())
			}
		}
	})

	step.run("malformed root keeps everything", func(t *testing.T) {
		e.Commit(t, "break apps/", map[string]string{
			"apps/ml-inference.yaml": "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: [unclosed\n",
		})
		e.Webhook(t, webhookSecret)
		ev := waitEvent(t, e.Bus, bus.HubEventsCluster, "_", "DiscoveryFailed")
		if !strings.Contains(ev.GetMessage(), "apps/ml-inference.yaml") {
			t.Errorf("root error %q does not name the file", ev.GetMessage())
		}
		got, _, err := e.desired(t, "prod-eu", "ml-inference")
		must(t, err)
		if got.GetDeletion() != nil {
			t.Error("a broken root deleted an application")
		}
	})

	step.run("removed app is published as a deletion", func(t *testing.T) {
		e.Commit(t, "retire ml-inference, fix worker", map[string]string{
			"apps/ml-inference.yaml":                          "",
			"charts/worker-service/templates/deployment.yaml": readFixture(t, "charts/worker-service/templates/deployment.yaml"),
		})
		e.Webhook(t, webhookSecret)
		ds := e.waitDesired(t, "prod-eu", "ml-inference", func(ds *flotillav1.DesiredState) error {
			if ds.GetDeletion() == nil {
				return errors.New("not deleted yet")
			}
			return nil
		})
		if ds.GetDeletion().GetCascade() {
			t.Error("ml-inference has no resources finalizer: its objects must be orphaned, not deleted")
		}
		waitEvent(t, e.Bus, bus.HubEventsCluster, "worker-service", "Recovered")
	})

	step.run("a cluster registered later gets its desired state", func(t *testing.T) {
		e.Register(t, "prod-us", map[string]string{"env": "production"})
		e.waitDesired(t, "prod-us", "api-service", hasHistory(1))
	})

	step.run("a label change retargets", func(t *testing.T) {
		e.Label(t, "prod-us", map[string]string{"env": "staging"})
		ds := e.waitDesired(t, "prod-us", "api-service", hasHistory(2))
		if got := ds.GetRender().GetHelm().GetValueFiles(); len(got) != 1 || !strings.Contains(got[0], "environments/staging/") {
			t.Errorf("relabelled cluster got value files %v, want staging's", got)
		}
		e.waitDesired(t, "prod-us", "root-app", func(ds *flotillav1.DesiredState) error {
			if ds.GetDeletion() == nil || !ds.GetDeletion().GetCascade() {
				return errors.New("production-only root-app not deleted (with cascade) from a cluster that left production")
			}
			return nil
		})
	})
}

func waitEvent(t *testing.T, b *bus.Bus, cluster, app, reason string) *flotillav1.Event {
	t.Helper()
	var found *flotillav1.Event
	testenv.Eventually(t, 30*time.Second, func() error {
		events, err := b.Events(t.Context(), cluster, app, 1000)
		if err != nil {
			return err
		}
		for _, ev := range events {
			if ev.GetReason() == reason {
				found = ev
				return nil
			}
		}
		return fmt.Errorf("no %s event for %s/%s among %d", reason, cluster, app, len(events))
	})
	return found
}

func readFixture(t *testing.T, rel string) string {
	t.Helper()
	return testenv.FixtureFile(t, flotillatest.FixtureRepo, rel)
}

func mustExist(t *testing.T, dir, rel string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
		t.Errorf("artifact lacks %s", rel)
	}
}

func mustNotExist(t *testing.T, dir, rel string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, rel)); err == nil {
		t.Errorf("artifact holds %s, which it does not need", rel)
	}
}

// mustPublish writes puts to the bus as anyone with write access to it
// could, and fails the test if the server does not take them all.
func mustPublish(t testing.TB, b *bus.Bus, puts []bus.DesiredPut) {
	t.Helper()
	_, err := b.PublishDesired(t.Context(), puts)
	must(t, err)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
