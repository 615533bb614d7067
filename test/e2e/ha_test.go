package e2e

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/signing"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// hubReplicas are three hub binaries on one Git server, their embedded
// NATS servers routed into one JetStream cluster that holds every bucket
// and stream at three replicas, as docs/operations.md ("Running it highly
// available") configures them.
type hubReplicas struct {
	git     *testenv.GitServer
	bin     string
	configs [3]string
	apiURLs [3]string
	procs   [3]*testenv.Process
	http    *http.Client
	// caFile is the private CA the replicas share.
	caFile string
	// bus reads the replicas' buckets with the hub's permissions.
	bus    *bus.Bus
	verify *signing.Verifier
}

// productionRoot is the fixture's root for the production clusters.
const productionRoot = "{name: production, repo: " + flotillatest.RepoURL + ", path: apps, clusters: env=production}"

// startHubReplicas starts three replicas on the fixture with one root
// (YAML, as a roots entry of the hub's config).
func startHubReplicas(t *testing.T, root string) *hubReplicas {
	t.Helper()
	r := &hubReplicas{git: testenv.NewGitServer(t, testenv.GitServerOptions{}), bin: testenv.BuildCommand(t, "./cmd/hub")}
	r.git.CreateRepo(t, flotillatest.FixtureRepo)
	r.git.PushDir(t, flotillatest.FixtureRepo, "main", "initial import", testenv.Fixture(t, flotillatest.FixtureRepo))

	// The keys and CA the replicas share, made once and copied to each.
	shared := t.TempDir()
	if out, err := exec.Command(r.bin, "init", "-data-dir", shared).CombinedOutput(); err != nil {
		t.Fatalf("hub init: %v: %s", err, out)
	}
	r.caFile = filepath.Join(shared, "tls", tlsca.CAFile)
	secrets := t.TempDir()
	secret := func(name, value string) string {
		path := filepath.Join(secrets, name)
		must(t, os.WriteFile(path, []byte(value), 0o600))
		return path
	}
	// Each replica listens only once its JetStream cluster formed, seconds
	// later: ports from the ephemeral range may be a connection's by then.
	addrs := testenv.FreeServerAddrs(t, 9)
	natsAddrs, routeAddrs, apiAddrs := addrs[0:3], addrs[3:6], addrs[6:9]
	for i := range 3 {
		r.apiURLs[i] = "https://" + apiAddrs[i]
	}
	natsURLs := "tls://" + strings.Join(natsAddrs, ",tls://")
	routes := "tls://" + strings.Join(routeAddrs, ", tls://")
	for i := range 3 {
		data := t.TempDir()
		copyTree(t, shared, data)
		r.configs[i] = filepath.Join(t.TempDir(), "hub.yaml")
		must(t, os.WriteFile(r.configs[i], []byte(fmt.Sprintf(`
dataDir: %s
listen: %s
replica: {name: hub-%d, advertiseURL: %s}
nats:
  embeddedListen: %s
  replicas: 3
  advertiseURL: %s
  cluster: {listen: %s, routes: [%s]}
repositories:
  - {url: %s, fetchURL: %s, pollInterval: 5s}
roots:
  - %s
webhook: {secretFile: %s}
api:
  tokens:
    - {name: ops, role: viewer, tokenFile: %s}
    - {name: oncall, role: operator, tokenFile: %s}
    - {name: root, role: admin, tokenFile: %s}
`, data, apiAddrs[i], i, r.apiURLs[i], natsAddrs[i], natsURLs, routeAddrs[i], routes,
			flotillatest.RepoURL, r.git.RepoURL(flotillatest.FixtureRepo), root, secret("webhook", webhookSecret),
			secret("viewer", apiToken), secret("operator", operatorToken), secret("admin", adminToken))), 0o600))
	}
	for i := range 3 {
		r.start(t, i)
	}
	ca, err := os.ReadFile(r.caFile)
	must(t, err)
	clientTLS, err := tlsca.ClientConfig(ca)
	must(t, err)
	r.http = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 10 * time.Second}
	t.Setenv("FLOTILLA_CA_FILE", r.caFile)
	for i := range 3 {
		r.waitServing(t, i)
	}
	r.leader(t, -1)

	authority, err := natsauth.LoadOrCreate(filepath.Join(shared, "trust"))
	must(t, err)
	creds, _, err := authority.User("ha-test", natsauth.HubPermissions())
	must(t, err)
	user, err := natsauth.Credentials(creds)
	must(t, err)
	nc, err := nats.Connect(natsURLs, user, nats.Secure(clientTLS), nats.MaxReconnects(-1))
	must(t, err)
	t.Cleanup(nc.Close)
	r.bus, err = bus.Bind(t.Context(), nc)
	must(t, err)
	keys, err := signing.LoadKeySet(shared)
	must(t, err)
	r.verify = keys.Verifier
	return r
}

// copyTree copies the files under src to the same paths under dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	must(t, filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o700))
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	}))
}

// start starts replica i (again).
func (r *hubReplicas) start(t *testing.T, i int) {
	r.procs[i] = testenv.StartProcess(t, r.bin, "-config", r.configs[i])
}

// kill kills replica i, and its NATS server with it, with SIGKILL.
func (r *hubReplicas) kill(t *testing.T, i int) {
	must(t, r.procs[i].Kill())
}

// waitServing waits until replica i serves its API.
func (r *hubReplicas) waitServing(t *testing.T, i int) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, func() error {
		resp, err := r.http.Get(r.apiURLs[i] + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("hub-%d: %s", i, resp.Status)
		}
		return nil
	})
}

var leaderGauge = regexp.MustCompile(`(?m)^flotilla_hub_leader 1$`)

// leader waits until exactly one replica other than not says it leads,
// and returns it.
func (r *hubReplicas) leader(t *testing.T, not int) int {
	t.Helper()
	found := -1
	testenv.Eventually(t, time.Minute, func() error {
		var leaders []int
		for i := range 3 {
			if i == not {
				continue
			}
			resp, err := r.http.Get(r.apiURLs[i] + "/metrics")
			if err != nil {
				continue // killed, or not serving yet
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if leaderGauge.Match(body) {
				leaders = append(leaders, i)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("replicas leading: %v, want one", leaders)
		}
		found = leaders[0]
		return nil
	})
	return found
}

func (r *hubReplicas) commit(t *testing.T, tag string) string {
	t.Helper()
	return r.git.WriteFiles(t, flotillatest.FixtureRepo, "main", "deploy: worker-service "+tag, map[string]string{
		"environments/production/worker-service-values.yaml": "replicaCount: 2\nimage:\n  tag: \"" + tag + "\"\nqueue: jobs-production\n",
	})
}

// haFleet is hubReplicas with two production clusters, prod-eu and
// prod-us, whose agent binaries were given every NATS server's URL,
// synced to the fixture.
type haFleet struct {
	*hubReplicas
	names    []string
	clusters map[string]*testenv.Cluster
	agents   map[string]*agentBinary
	// deployments are each cluster's Deployments once synced, and first
	// the history id of worker-service it synced.
	deployments map[string][]string
	first       map[string]uint64
}

func startHAFleet(t *testing.T) *haFleet {
	t.Helper()
	f := &haFleet{hubReplicas: startHubReplicas(t, productionRoot), names: []string{"prod-eu", "prod-us"}, clusters: map[string]*testenv.Cluster{},
		agents: map[string]*agentBinary{}, deployments: map[string][]string{}, first: map[string]uint64{}}
	agentBin := testenv.BuildCommand(t, "./cmd/agent")
	lead := f.leader(t, -1)
	for i, name := range f.names {
		c := testenv.StartCluster(t, testenv.ClusterOptions{Name: name})
		f.clusters[name] = c
		// Added through a follower: it forwards the call to the leader.
		dir := filepath.Join(t.TempDir(), name)
		out, code := flotilla(t, "cluster", "add", name, "--labels", "env=production", "--out", dir, "--hub", f.apiURLs[(lead+1+i)%3], "--token", adminToken)
		if code != 0 {
			t.Fatalf("cluster add %s through a follower: exit %d: %s", name, code, out)
		}
		f.agents[name] = &agentBinary{bin: agentBin,
			args: []string{"--credentials", dir, "--kubeconfig", c.Kubeconfig, "--cache-dir", t.TempDir(), "--metrics-addr", testenv.FreeAddr(t)}}
		f.agents[name].restart(t)
	}
	for _, name := range f.names {
		waitImage(t, f.clusters[name], deployments, "production", "worker-service", "worker-service:2.3.0")
		f.deployments[name] = deploymentNames(t, f.clusters[name])
		entry, err := f.bus.GetDesired(t.Context(), name, "worker-service")
		must(t, err)
		ds, err := f.verify.Verify(entry.State)
		must(t, err)
		f.first[name] = ds.GetHistoryId()
	}
	return f
}

// TestHubReplicasLoseANATSNodeAndTheirLeader: three hub replicas, each
// with its embedded NATS server in one JetStream cluster at R3, and two
// clusters whose agents were given every server's URL. A follower is
// killed with SIGKILL (its NATS node with it) while a commit fans out; the
// leader is killed with SIGKILL right after the next commit's webhook, and
// a follower takes over. Both commits reach both clusters, each syncs
// every history id once, history ids strictly increase, and nothing else
// in the clusters changes.
func TestHubReplicasLoseANATSNodeAndTheirLeader(t *testing.T) {
	f := startHAFleet(t)
	r, names, clusters, before, first := f.hubReplicas, f.names, f.clusters, f.deployments, f.first
	lead := r.leader(t, -1)

	// A NATS node dies during a fan-out.
	follower := (lead + 1) % 3
	r.commit(t, "2.4.0")
	if code := flotillatest.PostWebhook(t, r.http, r.apiURLs[lead], webhookSecret); code != http.StatusAccepted {
		t.Fatalf("webhook: HTTP %d", code)
	}
	r.kill(t, follower)
	for _, name := range names {
		waitImage(t, clusters[name], deployments, "production", "worker-service", "worker-service:2.4.0")
	}
	r.start(t, follower)
	r.waitServing(t, follower)

	// The leader dies right after it took the next commit's webhook. (The
	// lease may have moved while a NATS node was away.)
	lead = r.leader(t, -1)
	head := r.commit(t, "2.5.0")
	if code := flotillatest.PostWebhook(t, r.http, r.apiURLs[(lead+2)%3], webhookSecret); code != http.StatusAccepted {
		t.Fatalf("webhook through a follower: HTTP %d", code)
	}
	r.kill(t, lead)
	killed := time.Now()
	next := r.leader(t, lead)
	t.Logf("hub-%d took over %s after hub-%d was killed", next, time.Since(killed).Round(100*time.Millisecond), lead)
	for _, name := range names {
		waitImage(t, clusters[name], deployments, "production", "worker-service", "worker-service:2.5.0")
	}
	r.start(t, lead)
	r.waitServing(t, lead)

	for _, name := range names {
		testenv.Eventually(t, 2*time.Minute, func() error {
			return converged(t, r.bus, r.verify, name, "worker-service", head, first[name])
		})
		if after := deploymentNames(t, clusters[name]); !slices.Equal(after, before[name]) {
			t.Errorf("%s: Deployments %v, want %v as before the faults", name, after, before[name])
		}
	}
}

// converged checks the fault suite's invariants for app in cluster: its
// history ids strictly increase and every entry verifies; the newest is of
// Git's newest commit head; the agent reports it synced; and since history
// id after, the agent synced each id at most once, the newest among them.
func converged(t *testing.T, b *bus.Bus, verify *signing.Verifier, cluster, app, head string, after uint64) error {
	history, err := b.DesiredHistory(t.Context(), cluster, app)
	if err != nil {
		return err
	}
	var ids []uint64
	var newest *flotillav1.DesiredState
	for _, entry := range history {
		ds, err := verify.Verify(entry.State)
		if err != nil {
			return fmt.Errorf("%s: history entry %d: %w", cluster, entry.Revision, err)
		}
		if len(ids) > 0 && ds.GetHistoryId() <= ids[len(ids)-1] {
			return fmt.Errorf("%s: history ids not strictly increasing: %v then %d", cluster, ids, ds.GetHistoryId())
		}
		ids, newest = append(ids, ds.GetHistoryId()), ds
	}
	if newest.GetSource().GetCommit() != head {
		return fmt.Errorf("%s: newest desired state is of commit %s, want %s", cluster, newest.GetSource().GetCommit(), head)
	}
	st, err := b.GetStatus(t.Context(), cluster, app)
	if err != nil {
		return err
	}
	if st.GetHistoryId() != newest.GetHistoryId() || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
		return fmt.Errorf("%s: status history %d %v, want %d Succeeded", cluster, st.GetHistoryId(), st.GetPhase(), newest.GetHistoryId())
	}
	events, err := b.Events(t.Context(), cluster, app, 1000)
	if err != nil {
		return err
	}
	synced := map[uint64]int{}
	for _, ev := range events {
		if ev.GetReason() == flotillav1.ReasonSyncSucceeded && ev.GetHistoryId() > after {
			synced[ev.GetHistoryId()]++
		}
	}
	for id, n := range synced {
		if n != 1 {
			t.Errorf("%s: history %d synced %d times", cluster, id, n)
		}
	}
	if synced[newest.GetHistoryId()] != 1 {
		return fmt.Errorf("%s: syncs after history %d: %v; want the newest, %d, among them", cluster, after, synced, newest.GetHistoryId())
	}
	return nil
}

// deploymentNames lists the cluster's Deployments as namespace/name.
func deploymentNames(t *testing.T, c *testenv.Cluster) []string {
	t.Helper()
	out, err := c.Kubectl(t, "get", "deployments", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}")
	must(t, err)
	return strings.Fields(out)
}
