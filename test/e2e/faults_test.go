package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/internal/clustercreds"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/bench"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// TestNoCommitIsLostWhileJetStreamIsAway: NATS goes away for 60 s while
// three commits land. The hub takes each webhook and fetches each commit,
// cannot publish, says so (flotilla_hub_publish_pending) and keeps
// trying; once NATS is back the newest commit is published and reaches
// the cluster, its history ids strictly increasing, and the agent syncs
// once, to the newest, not once per commit.
func TestNoCommitIsLostWhileJetStreamIsAway(t *testing.T) {
	op := startOperatorNATS(t)
	h := flotillatest.StartHub(t, flotillatest.HubOptions{
		ExternalNATS: &flotillatest.ExternalNATS{URL: op.url, CredentialsFile: op.hubCredsFile, CAFile: op.caFile}})
	hubKey, err := signing.ParsePublicKey(h.PublicKeyPEM)
	must(t, err)
	e := &hubEnv{Hub: h, verify: signing.NewVerifier(hubKey)}
	production := map[string]string{"env": "production"}
	bundleDir := e.Credentials(t, "prod-eu", production)
	prodCreds, _, err := op.authority.User("prod-eu", natsauth.ClusterPermissions("prod-eu"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(bundleDir, clustercreds.NATSCredsFile), prodCreds, 0o600))
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	startAgent(t, e, prod, production, t.TempDir())
	waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
	before, _, err := e.desired(t, "prod-eu", "worker-service")
	must(t, err)

	op.stop()
	var head string
	for _, tag := range []string{"2.4.0", "2.5.0", "2.6.0"} {
		head = e.Commit(t, "deploy: worker-service "+tag, map[string]string{
			"environments/production/worker-service-values.yaml": "replicaCount: 2\nimage:\n  tag: \"" + tag + "\"\nqueue: jobs-production\n",
		})
		if code := e.Webhook(t, webhookSecret); code != 202 {
			t.Fatalf("webhook while NATS is away: HTTP %d", code)
		}
	}
	pending := regexp.MustCompile(`(?m)^flotilla_hub_publish_pending ([0-9.e+]+)$`)
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := e.HTTP.Get(e.APIURL + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := pending.FindSubmatch(body)
		if m == nil {
			return fmt.Errorf("no flotilla_hub_publish_pending")
		}
		if n, _ := strconv.ParseFloat(string(m[1]), 64); n < 1 {
			return fmt.Errorf("flotilla_hub_publish_pending %s while NATS is away", m[1])
		}
		return nil
	})
	time.Sleep(60 * time.Second) // the outage: nothing to wait for but time
	op.start(t)

	waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.6.0")
	ds := e.waitDesired(t, "prod-eu", "worker-service", func(ds *flotillav1.DesiredState) error {
		if ds.GetSource().GetCommit() != head {
			return fmt.Errorf("commit %s, want %s", ds.GetSource().GetCommit(), head)
		}
		return nil
	})
	history, err := e.Bus.DesiredHistory(t.Context(), "prod-eu", "worker-service")
	must(t, err)
	last := uint64(0)
	for _, entry := range history {
		got, err := e.verify.Verify(entry.State)
		must(t, err)
		if got.GetHistoryId() <= last {
			t.Errorf("history ids not strictly increasing: %d after %d", got.GetHistoryId(), last)
		}
		last = got.GetHistoryId()
	}
	if ds.GetHistoryId() <= before.GetHistoryId() {
		t.Errorf("history %d after %d", ds.GetHistoryId(), before.GetHistoryId())
	}
	e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
		if st.GetHistoryId() != ds.GetHistoryId() || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
			return fmt.Errorf("status history %d %v, want %d Succeeded", st.GetHistoryId(), st.GetPhase(), ds.GetHistoryId())
		}
		return nil
	})
	syncedOnce(t, e, "worker-service", before.GetHistoryId(), ds.GetHistoryId())
}

// syncedOnce waits until the events of app in prod-eu show exactly one
// successful sync of a history id above after, and it is want's: after
// an outage the agent syncs once, to the newest desired state.
func syncedOnce(t *testing.T, e *hubEnv, app string, after, want uint64) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		events, err := e.Bus.Events(t.Context(), "prod-eu", app, 500)
		if err != nil {
			return err
		}
		var synced []uint64
		for _, ev := range events {
			if ev.GetReason() == flotillav1.ReasonSyncSucceeded && ev.GetHistoryId() > after {
				synced = append(synced, ev.GetHistoryId())
			}
		}
		if len(synced) != 1 || synced[0] != want {
			return fmt.Errorf("syncs after history %d: %v, want one, of history %d", after, synced, want)
		}
		return nil
	})
}

// agentBinary is the agent binary running as its own process, for tests
// that kill it.
type agentBinary struct {
	bin  string
	args []string
	proc *testenv.Process
}

// startAgentBinary starts a hub, the prod-eu cluster and the agent binary
// on it, and waits until the fixture is applied.
func startAgentBinary(t *testing.T) (*hubEnv, *testenv.Cluster, *agentBinary) {
	t.Helper()
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	a := &agentBinary{bin: testenv.BuildCommand(t, "./cmd/agent"),
		args: []string{"--credentials", e.Credentials(t, "prod-eu", map[string]string{"env": "production"}), "--kubeconfig", prod.Kubeconfig, "--cache-dir", t.TempDir()}}
	a.restart(t)
	waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
	return e, prod, a
}

// restart starts the agent binary (again).
func (a *agentBinary) restart(t *testing.T) { a.proc = testenv.StartProcess(t, a.bin, a.args...) }

// Kill kills it with SIGKILL.
func (a *agentBinary) Kill() error { return a.proc.Kill() }

// TestAnAgentKilledMidApplyConverges: the agent binary is killed with
// SIGKILL while it writes a 1,000-object application, and started again.
// It converges to Git: every object there, those written before the kill
// not written again, and the cluster's other applications untouched.
func TestAnAgentKilledMidApplyConverges(t *testing.T) {
	e, prod, agent := startAgentBinary(t)
	others := settledResourceVersions(t, prod)

	ds := commitBulk(t, e, appIn("bulk", "bulk", "bulk"))
	waitMidApply(t, prod)
	must(t, agent.Kill())
	written := bulkObjects(t, prod)
	if len(written) == 0 || len(written) >= 1000 {
		t.Fatalf("%d of 1,000 objects written at the kill: want the kill mid-apply", len(written))
	}
	t.Logf("killed with %d of 1,000 objects written", len(written))

	agent.restart(t)
	e.WaitStatus(t, "prod-eu", "bulk", 2*time.Minute, func(st *flotillav1.AppStatus) error {
		if st.GetHistoryId() != ds.GetHistoryId() || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
			return fmt.Errorf("history %d %v: %s", st.GetHistoryId(), st.GetPhase(), st.GetMessage())
		}
		return nil
	})
	bulkConverged(t, prod, written, others)
}

// commitBulk commits a 1,000-object app, "bulk", as the Application
// manifest app describes it, and returns its desired state once the hub
// published it.
func commitBulk(t *testing.T, e *hubEnv, app string) *flotillav1.DesiredState {
	t.Helper()
	var objects strings.Builder
	for _, o := range bench.ThousandObjects("bulk") {
		data, err := yaml.Marshal(o.Object)
		must(t, err)
		objects.WriteString("---\n")
		objects.Write(data)
	}
	e.Commit(t, "add a 1,000-object app", map[string]string{"apps/bulk.yaml": app, "bulk/objects.yaml": objects.String()})
	e.Webhook(t, webhookSecret)
	return e.waitDesired(t, "prod-eu", "bulk", func(*flotillav1.DesiredState) error { return nil })
}

// bulkObjects are the bulk app's objects in the cluster, with their
// resource versions.
func bulkObjects(t *testing.T, c *testenv.Cluster) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, gvr := range []schema.GroupVersionResource{configMaps, services, deployments} {
		list, err := c.Dynamic.Resource(gvr).Namespace("bulk").List(context.Background(), metav1.ListOptions{LabelSelector: "flotilla.dev/app=bulk"})
		must(t, err)
		for _, o := range list.Items {
			out[gvr.Resource+"/"+o.GetName()] = o.GetResourceVersion()
		}
	}
	return out
}

// waitMidApply waits until the agent wrote the bulk app's first objects.
func waitMidApply(t *testing.T, c *testenv.Cluster) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for len(bulkObjects(t, c)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent wrote nothing of the bulk app in 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAnAPIServerDownTwoMinutesMidSync: the cluster's kube-apiserver is
// killed with SIGKILL while the agent writes a 1,000-object app, and comes
// back two minutes later. Meanwhile the agent says the sync failed and
// why, and keeps trying; then it converges to Git: every object there,
// those written before the outage not written again, the other
// applications untouched. (The app retries failed syncs, as an Argo CD
// user sets syncPolicy.retry for it to.)
func TestAnAPIServerDownTwoMinutesMidSync(t *testing.T) {
	e, prod, _ := startAgentBinary(t)
	others := settledResourceVersions(t, prod)
	// As in Argo CD, a failed sync is retried only under a retry policy.
	ds := commitBulk(t, e, appIn("bulk", "bulk", "bulk")+"    retry: {limit: -1, backoff: {duration: 5s, maxDuration: 20s}}\n")
	waitMidApply(t, prod)
	// What was written a moment before the outage (the apiserver cannot be
	// asked during it): none of it may be written again.
	written := bulkObjects(t, prod)
	prod.KillAPIServer(t)
	down := time.Now()
	e.WaitStatus(t, "prod-eu", "bulk", time.Minute, func(st *flotillav1.AppStatus) error {
		if st.GetHistoryId() != ds.GetHistoryId() || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_FAILED {
			return fmt.Errorf("history %d %v: %s", st.GetHistoryId(), st.GetPhase(), st.GetMessage())
		}
		if !strings.Contains(st.GetMessage(), "connection refused") {
			return fmt.Errorf("the failure does not say the API server is unreachable: %s", st.GetMessage())
		}
		return nil
	})
	time.Sleep(2*time.Minute - time.Since(down)) // the outage: nothing to wait for but time
	prod.StartAPIServer(t)

	e.WaitStatus(t, "prod-eu", "bulk", 3*time.Minute, func(st *flotillav1.AppStatus) error {
		if st.GetHistoryId() != ds.GetHistoryId() || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
			return fmt.Errorf("history %d %v: %s", st.GetHistoryId(), st.GetPhase(), st.GetMessage())
		}
		return nil
	})
	t.Logf("synced %s after the API server came back; %d of 1,000 objects were written before it went down", time.Since(down)-2*time.Minute, len(written))
	bulkConverged(t, prod, written, others)
}

// bulkConverged checks the bulk app after a fault: all 1,000 objects
// there, those written before the fault (written) not written again, and
// the other applications' objects as they were (others).
func bulkConverged(t *testing.T, c *testenv.Cluster, written, others map[string]string) {
	t.Helper()
	after := bulkObjects(t, c)
	if len(after) != 1000 {
		t.Errorf("%d of 1,000 objects after the fault", len(after))
	}
	for key, rv := range written {
		if after[key] != rv {
			t.Errorf("%s was written again after the fault (resource version %s, then %s)", key, rv, after[key])
			break
		}
	}
	if got := resourceVersions(t, c); fmt.Sprint(got) != fmt.Sprint(others) {
		t.Errorf("the other applications' objects changed:\nbefore %v\nafter  %v", others, got)
	}
}

// TestAnAgentOfflineWhile50CommitsLand: the agent binary is killed and 50
// commits land meanwhile. The fleet view says the cluster is offline and
// what its application last reported, never a health it may no longer
// have; back, the agent makes one sync, to the newest desired state.
func TestAnAgentOfflineWhile50CommitsLand(t *testing.T) {
	e, prod, agent := startAgentBinary(t)
	before, _, err := e.desired(t, "prod-eu", "worker-service")
	must(t, err)
	must(t, agent.Kill())

	for i := 1; i <= 50; i++ {
		e.Commit(t, fmt.Sprintf("deploy: worker-service 3.0.%d", i), map[string]string{
			"environments/production/worker-service-values.yaml": fmt.Sprintf("replicaCount: 2\nimage:\n  tag: \"3.0.%d\"\nqueue: jobs-production\n", i),
		})
		e.Webhook(t, webhookSecret)
	}
	newest := e.waitDesired(t, "prod-eu", "worker-service", func(ds *flotillav1.DesiredState) error {
		if !strings.Contains(ds.GetSource().GetCommitMessage(), "3.0.50") {
			return fmt.Errorf("at %q", ds.GetSource().GetCommitMessage())
		}
		return nil
	})
	// Once its heartbeat expired (45 s), the cluster and its applications
	// say so.
	testenv.Eventually(t, 90*time.Second, func() error {
		clusters, _ := flotilla(t, "cluster", "list", "--hub", e.APIURL, "--token", apiToken)
		apps, _ := flotilla(t, "app", "list", "--cluster", "prod-eu", "--hub", e.APIURL, "--token", apiToken)
		if !regexp.MustCompile(`prod-eu\s+offline since`).MatchString(clusters) || !strings.Contains(apps, "prod-eu (offline since") ||
			!strings.Contains(apps, "last reported") {
			return fmt.Errorf("cluster list:\n%s\napp list:\n%s", clusters, apps)
		}
		return nil
	})

	agent.restart(t)
	waitImage(t, prod, deployments, "production", "worker-service", "worker-service:3.0.50")
	syncedOnce(t, e, "worker-service", before.GetHistoryId(), newest.GetHistoryId())
	apps, _ := flotilla(t, "app", "list", "--cluster", "prod-eu", "--hub", e.APIURL, "--token", apiToken)
	if strings.Contains(apps, "offline") {
		t.Errorf("back online, the app list still says offline:\n%s", apps)
	}
}
