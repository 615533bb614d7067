package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/cli"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestHostileClients attacks a real hub, its embedded NATS and real agents
// the way docs/architecture.md's threat model names, and checks each attack
// is refused (by the NATS server or by the code), changes nothing, and that
// the fleet still converges afterwards.
func TestHostileClients(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	staging := testenv.StartCluster(t, testenv.ClusterOptions{Name: "staging-1"})
	prodCache := t.TempDir()
	parent := t // an agent restarted in a step must outlive it
	prodAgent := startAgent(t, e, prod, map[string]string{"env": "production"}, prodCache)
	stagingAgent := startAgent(t, e, staging, map[string]string{"env": "staging"}, t.TempDir())
	waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
	waitImage(t, staging, deployments, "staging", "worker-service", "worker-service:2.4.0-rc.2")
	ca, err := os.ReadFile(e.CAFile)
	must(t, err)
	tlsConfig, err := tlsca.ClientConfig(ca)
	must(t, err)

	step := newSteps(t)
	step.run("anonymous and plaintext clients are refused", func(t *testing.T) {
		if nc, err := nats.Connect(e.NATSURL, nats.Secure(tlsConfig), nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Error("an anonymous client connected to the hub's NATS")
		}
		plain := strings.Replace(e.NATSURL, "tls://", "nats://", 1)
		if nc, err := nats.Connect(plain, nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Error("a plaintext client connected to the hub's NATS")
		}
		if resp, err := http.Get(strings.Replace(e.APIURL, "https://", "http://", 1) + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			t.Error("the hub's API answered plaintext HTTP")
		}
	})

	step.run("cluster A's credentials reach nothing of cluster B's, nor the fleet's", func(t *testing.T) {
		// The attacker holds prod-eu's credentials (a compromised cluster).
		a := e.ClusterConn(t, "prod-eu", nil, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		short := func() context.Context {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			t.Cleanup(cancel)
			return ctx
		}
		// B's status as its agent reported it (the image can run before
		// the status is written).
		before := e.WaitStatus(t, "staging-1", "worker-service", time.Minute, func(*flotillav1.AppStatus) error { return nil })
		attacks := map[string]error{
			"read B's status":        func() error { _, err := a.GetStatus(short(), "staging-1", "worker-service"); return err }(),
			"write B's status":       a.PutStatus(short(), &flotillav1.AppStatus{Cluster: "staging-1", App: "worker-service", Message: "forged"}),
			"write B's registration": a.Register(short(), &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: "staging-1", Labels: map[string]string{"env": "production"}}),
			"write an audit event":   a.AppendEvent(short(), &flotillav1.Event{Reason: flotillav1.ReasonAudit, Actor: "oncall", Message: "oncall SyncApp ok"}),
			"publish a desired state": func() error {
				_, err := (&bus.Bus{Conn: a}).PublishDesired(short(), []bus.DesiredPut{{Cluster: "prod-eu", App: "worker-service", State: &flotillav1.SignedDesiredState{SchemaVersion: 1}}})
				return err
			}(),
		}
		for name, err := range attacks {
			if err == nil {
				t.Errorf("%s: the attack succeeded", name)
			}
		}
		// Raw JetStream API calls as the attacker's own client would make.
		js, err := jetstream.New(clusterNATS(t, e, "prod-eu"))
		must(t, err)
		if err := js.DeleteKeyValue(short(), bus.DesiredBucket); err == nil {
			t.Error("deleted the desired-state bucket")
		}
		if _, err := js.Stream(short(), "KV_"+bus.DesiredBucket); err == nil {
			t.Error("read the desired-state stream's info (every key of the fleet)")
		}
		if _, err := js.OrderedConsumer(short(), "KV_"+bus.DesiredBucket, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"$KV." + bus.DesiredBucket + ".staging-1.>"}}); err == nil {
			t.Error("opened a consumer on B's desired states")
		}
		if err := js.DeleteStream(short(), "KV_"+bus.StatusBucket); err == nil {
			t.Error("deleted the status bucket")
		}
		// Subscriptions the server refuses: it says so asynchronously.
		violations := make(chan error, 8)
		nc := e.ClusterNATS(t, "prod-eu", nil, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
		for _, subject := range []string{"$KV." + bus.DesiredBucket + ".staging-1.>", "flotilla.cmd.staging-1"} {
			if _, err := nc.SubscribeSync(subject); err != nil {
				continue // refused at once
			}
			select {
			case err := <-violations:
				if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") || !strings.Contains(err.Error(), subject) {
					t.Errorf("subscribe %s: %v", subject, err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("subscribed to %s", subject)
			}
		}
		if _, err := js.Stream(short(), "KV_"+bus.StatusBucket); err == nil {
			t.Error("read the status stream's info")
		}
		if _, err := e.Bus.GetDesired(t.Context(), "staging-1", "worker-service"); err != nil {
			t.Errorf("B's desired state is gone: %v", err)
		}
		if s, err := e.Bus.GetStatus(t.Context(), "staging-1", "worker-service"); err != nil || s.GetMessage() != before.GetMessage() {
			t.Errorf("staging-1's status changed: %v, %v", s, err)
		}
		for _, ev := range e.events(t, bus.HubEventsCluster, "_", flotillav1.ReasonAudit) {
			if strings.Contains(ev.GetMessage(), "oncall SyncApp") {
				t.Errorf("a forged audit event landed: %v", ev)
			}
		}
	})

	step.run("a 64 KB gzip bomb without a token is refused before it is read", func(t *testing.T) {
		var body bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&body, gzip.BestCompression)
		chunk := make([]byte, 1<<20)
		for body.Len() < 64<<10 {
			_, _ = zw.Write(chunk)
		}
		must(t, zw.Close())
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		req, err := http.NewRequest(http.MethodPost, e.APIURL+"/flotilla.v1.HubService/SyncApp", &body)
		must(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := e.HTTP.Do(req)
		must(t, err)
		resp.Body.Close()
		runtime.ReadMemStats(&after)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %s, want 401", resp.Status)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
			t.Errorf("the hub allocated %d MiB for an unauthenticated bomb", grew>>20)
		}
	})

	step.run("a Kustomize remote resource is refused, naming the file and the URL", func(t *testing.T) {
		e.Commit(t, "add an app with a remote resource", map[string]string{
			"apps/remote.yaml":                    applicationYAML("remote", "manifests/remote", "remote"),
			"manifests/remote/kustomization.yaml": "resources:\n  - https://raw.githubusercontent.com/your-org/elsewhere/main/cm.yaml\n",
		})
		if code := e.Webhook(t, webhookSecret); code != http.StatusAccepted {
			t.Fatalf("webhook: %d", code)
		}
		// The hub renders the Application to discover what it holds; the
		// refusal is its report, and nothing of the app is published.
		e.waitEventMatching(t, bus.HubEventsCluster, "remote", flotillav1.ReasonAppInvalid, "manifests/remote/kustomization.yaml", "raw.githubusercontent.com")
		if _, _, err := e.desired(t, "prod-eu", "remote"); !errors.Is(err, bus.ErrNotFound) {
			t.Errorf("a desired state of the refused app was published: %v", err)
		}
	})

	step.run("an object moved between apps in one commit is never deleted", func(t *testing.T) {
		cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: moves\ndata:\n  owner: %s\n"
		e.Commit(t, "two apps", map[string]string{
			"apps/mover-a.yaml":          applicationYAML("mover-a", "manifests/mover-a", "moves"),
			"apps/mover-b.yaml":          applicationYAML("mover-b", "manifests/mover-b", "moves"),
			"manifests/mover-a/cm.yaml":  fmt.Sprintf(cm, "a"),
			"manifests/mover-b/own.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b-own\n  namespace: moves\n",
		})
		e.Webhook(t, webhookSecret)
		first := waitConfigMapData(t, prod, "moves", "shared", "owner", "a")
		e.Commit(t, "move shared from a to b", map[string]string{
			"manifests/mover-a/cm.yaml":   "",
			"manifests/mover-a/keep.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a-own\n  namespace: moves\n",
			"manifests/mover-b/cm.yaml":   fmt.Sprintf(cm, "b"),
		})
		e.Webhook(t, webhookSecret)
		moved := waitConfigMapData(t, prod, "moves", "shared", "owner", "b")
		if moved.GetUID() != first.GetUID() {
			t.Errorf("the moved ConfigMap was deleted and re-created (uid %s, was %s)", moved.GetUID(), first.GetUID())
		}
		if got := moved.GetLabels()["flotilla.dev/app"]; got != "mover-b" {
			t.Errorf("flotilla.dev/app = %q, want mover-b", got)
		}
		e.WaitStatus(t, "prod-eu", "mover-a", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetSyncStatus() != flotillav1.SyncStatus_SYNC_STATUS_SYNCED {
				return fmt.Errorf("%v: %s", st.GetSyncStatus(), st.GetMessage())
			}
			return nil
		})
		if _, err := getObject(t, prod, configmaps, "moves", "shared"); apierrors.IsNotFound(err) {
			t.Error("mover-a pruned the ConfigMap mover-b now owns")
		}
	})

	step.run("a forged history entry is never re-signed: rollback to it is refused", func(t *testing.T) {
		// Written with bucket rights (a NATS admin gone rogue): no cluster's
		// credentials can write desired states at all.
		forged, err := proto.Marshal(&flotillav1.DesiredState{SchemaVersion: 1, Cluster: "prod-eu", App: "worker-service", HistoryId: 99,
			Artifact: &flotillav1.Artifact{Digest: "sha256:" + strings.Repeat("0", 64)}})
		must(t, err)
		mustPublish(t, e.Bus, []bus.DesiredPut{{Cluster: "prod-eu", App: "worker-service",
			State: &flotillav1.SignedDesiredState{SchemaVersion: 1, DesiredState: forged}}})
		out, code := flotilla(t, "app", "rollback", "worker-service", "--revision", "99", "--cluster", "prod-eu", "--hub", e.APIURL, "--token", operatorToken)
		if code == 0 || !strings.Contains(out, "does not verify") {
			t.Errorf("rollback to a forged entry: exit %d: %s", code, out)
		}
		e.waitEventMatching(t, "prod-eu", "worker-service", flotillav1.ReasonDesiredStateRefused, "")
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
	})

	step.run("replayed entries and an old deletion are refused after an agent restart", func(t *testing.T) {
		cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: doomed\n  namespace: doomed\n"
		e.Commit(t, "add doomed", map[string]string{"apps/doomed.yaml": applicationYAML("doomed", "manifests/doomed", "doomed"), "manifests/doomed/cm.yaml": cm})
		e.Webhook(t, webhookSecret)
		testenv.Eventually(t, time.Minute, func() error { _, err := getObject(t, prod, configmaps, "doomed", "doomed"); return err })
		e.Commit(t, "remove doomed", map[string]string{"apps/doomed.yaml": ""})
		e.Webhook(t, webhookSecret)
		testenv.Eventually(t, time.Minute, func() error {
			if _, err := getObject(t, prod, configmaps, "doomed", "doomed"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("doomed not deleted yet: %v", err)
			}
			return nil
		})
		e.Commit(t, "bring doomed back, bump worker-service", map[string]string{"apps/doomed.yaml": applicationYAML("doomed", "manifests/doomed", "doomed"),
			"environments/production/worker-service-values.yaml": strings.Replace(readFixture(t, "environments/production/worker-service-values.yaml"), "2.3.0", "2.3.1", 1)})
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.1")
		var first *unstructured.Unstructured
		testenv.Eventually(t, time.Minute, func() (err error) { first, err = getObject(t, prod, configmaps, "doomed", "doomed"); return err })

		// The attacker keeps what the hub once signed: the deletion of
		// doomed and worker-service's first entry (image 2.3.0).
		var replays []bus.DesiredPut
		for app, pick := range map[string]func(*flotillav1.DesiredState) bool{
			"doomed":         func(ds *flotillav1.DesiredState) bool { return ds.GetDeletion() != nil },
			"worker-service": func(ds *flotillav1.DesiredState) bool { return ds.GetHistoryId() == 1 },
		} {
			history, err := e.Bus.DesiredHistory(t.Context(), "prod-eu", app)
			must(t, err)
			for _, entry := range history {
				if ds, err := e.verify.Verify(entry.State); err == nil && pick(ds) {
					replays = append(replays, bus.DesiredPut{Cluster: "prod-eu", App: app, State: entry.State})
					break
				}
			}
		}
		if len(replays) != 2 {
			t.Fatalf("found %d of the 2 entries to replay", len(replays))
		}
		// Put back while the agent is down: what a restarted agent catches
		// up with is still the newest entry, not the replays.
		prodAgent.stop()
		mustPublish(t, e.Bus, replays)
		restarted := time.Now()
		prodAgent = startAgent(parent, e, prod, map[string]string{"env": "production"}, prodCache)
		e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetObservedAt().AsTime().Before(restarted) || st.GetSyncStatus() != flotillav1.SyncStatus_SYNC_STATUS_SYNCED {
				return fmt.Errorf("not compared since the restart: %v %s", st.GetSyncStatus(), st.GetMessage())
			}
			return nil
		})
		// Put back while it runs: refused by the history id the cluster
		// recorded, which the restart kept.
		mustPublish(t, e.Bus, replays)
		e.waitEventMatching(t, "prod-eu", "doomed", flotillav1.ReasonReplayed, "older than")
		e.waitEventMatching(t, "prod-eu", "worker-service", flotillav1.ReasonReplayed, "older than")
		if cm, err := getObject(t, prod, configmaps, "doomed", "doomed"); err != nil || cm.GetUID() != first.GetUID() {
			t.Errorf("the replayed deletion touched doomed: %v", err)
		}
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.1")
	})

	step.run("a replayed command is refused", func(t *testing.T) {
		sub, err := e.NATS.SubscribeSync("flotilla.cmd.prod-eu")
		must(t, err)
		defer sub.Unsubscribe()
		must(t, e.NATS.Flush())
		// A diff: a command the agent answers at once.
		if out, code := flotilla(t, "app", "diff", "worker-service", "--cluster", "prod-eu", "--hub", e.APIURL, "--token", operatorToken); code != 0 && code != cli.ExitDiffers {
			t.Fatalf("app diff: exit %d: %s", code, out)
		}
		msg, err := sub.NextMsg(10 * time.Second)
		must(t, err)
		captured := &flotillav1.SignedAgentCommand{}
		must(t, proto.Unmarshal(msg.Data, captured))
		reply, err := e.Bus.Command(t.Context(), "prod-eu", captured)
		must(t, err)
		if !strings.Contains(reply.GetError(), "replayed") {
			t.Errorf("reply to a replayed command: %v", reply)
		}
	})

	step.run("a revoked cluster is cut off, says so, and retries without crashing", func(t *testing.T) {
		out, code := flotilla(t, "cluster", "revoke", "staging-1", "--hub", e.APIURL, "--token", adminToken)
		if code != 0 || !strings.Contains(out, "revoked") {
			t.Fatalf("cluster revoke: exit %d: %s", code, out)
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			if !strings.Contains(stagingAgent.logs.String(), "NATS refuses this cluster's credentials") {
				return errors.New("the staging agent's log does not say its credentials were refused")
			}
			return nil
		})
		list, _ := flotilla(t, "cluster", "list", "--hub", e.APIURL, "--token", apiToken)
		if !strings.Contains(list, "staging-1") || !strings.Contains(list, "revoked") {
			t.Errorf("cluster list does not show staging-1 revoked:\n%s", list)
		}
		if stagingAgent.exited() {
			t.Error("the revoked cluster's agent stopped; it must retry with backoff")
		}
	})

	step.run("the fleet still converges", func(t *testing.T) {
		e.Commit(t, "bump worker-service", map[string]string{
			"environments/production/worker-service-values.yaml": strings.Replace(readFixture(t, "environments/production/worker-service-values.yaml"), "2.3.0", "2.3.2", 1),
		})
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.2")
	})
}

// clusterNATS is a raw connection with cluster's credentials, for attacks
// the bus does not offer.
func clusterNATS(t *testing.T, e *hubEnv, cluster string) *nats.Conn {
	t.Helper()
	return e.ClusterNATS(t, cluster, nil, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
}

// applicationYAML is an Argo CD Application of a directory or Kustomize
// source with automated prune.
func applicationYAML(name, path, namespace string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
  namespace: argocd
  finalizers: [resources-finalizer.argocd.argoproj.io]
spec:
  project: default
  source: {repoURL: https://github.com/your-org/gitops-config, targetRevision: HEAD, path: %s}
  destination: {server: https://kubernetes.default.svc, namespace: %s}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
`, name, path, namespace)
}

// waitConfigMapData waits until the ConfigMap's data[key] is want.
func waitConfigMapData(t *testing.T, c *testenv.Cluster, ns, name, key, want string) *unstructured.Unstructured {
	t.Helper()
	var cm *unstructured.Unstructured
	testenv.Eventually(t, time.Minute, func() error {
		var err error
		if cm, err = getObject(t, c, configmaps, ns, name); err != nil {
			return err
		}
		if got, _, _ := unstructured.NestedString(cm.Object, "data", key); got != want {
			return fmt.Errorf("%s/%s data.%s = %q, want %q", ns, name, key, got, want)
		}
		return nil
	})
	return cm
}
