package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flotilla-dev/flotilla/internal/cli"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// fleetRoot is the root of the fixture's web ApplicationSet (fleet/apps),
// for every cluster.
const fleetRoot = "{name: fleet, repo: " + flotillatest.RepoURL + ", path: fleet/apps}"

// fleetStages are the four clusters of the fleet test and their stage
// labels, in the order of the ApplicationSet's RollingSync steps.
var fleetStages = []struct{ name, stage string }{
	{"staging-1", "staging"}, {"prod-canary", "canary"}, {"prod-eu", "production"}, {"prod-us", "production"},
}

// fleetOfFour is three hub replicas on the fleet root and four clusters
// whose agent binaries run the web ApplicationSet's Applications, with a
// Prometheus scraping traffic whose error rate the test sets per cluster
// and version.
type fleetOfFour struct {
	*hubReplicas
	clusters map[string]*testenv.Cluster
	traffic  *testenv.Traffic
	prom     *testenv.Prometheus
	// versions are the versions committed, by commit.
	versions map[string]string
}

func startFleetOfFour(t *testing.T) *fleetOfFour {
	t.Helper()
	f := &fleetOfFour{hubReplicas: startHubReplicas(t, fleetRoot), clusters: map[string]*testenv.Cluster{}, traffic: testenv.StartTraffic(t),
		versions: map[string]string{}}
	// Every version serves 0.1 % errors everywhere, but v3 serves 30 % in
	// the canary cluster.
	for _, c := range fleetStages {
		for _, v := range []string{"v1", "v2", "v3", "v4", "v5"} {
			ratio := 0.001
			if c.name == "prod-canary" && v == "v3" {
				ratio = 0.3
			}
			f.traffic.Serve(c.name, v, ratio)
		}
	}
	f.prom = testenv.StartPrometheus(t, f.traffic.Target)
	f.prom.WaitQuery(t, errorRate("prod-canary", "v3"))
	f.setVersion(t, "v1")

	agentBin := testenv.BuildCommand(t, "./cmd/agent")
	lead := f.leader(t, -1)
	for _, c := range fleetStages {
		cluster := testenv.StartCluster(t, testenv.ClusterOptions{Name: c.name})
		f.clusters[c.name] = cluster
		dir := filepath.Join(t.TempDir(), c.name)
		if out, code := flotilla(t, "cluster", "add", c.name, "--labels", "stage="+c.stage, "--out", dir, "--hub", f.apiURLs[lead], "--token", adminToken); code != 0 {
			t.Fatalf("cluster add %s: exit %d: %s", c.name, code, out)
		}
		a := &agentBinary{bin: agentBin, args: []string{"--credentials", dir, "--kubeconfig", cluster.Kubeconfig, "--cache-dir", t.TempDir(), "--metrics-addr", testenv.FreeAddr(t)}}
		a.restart(t)
	}
	return f
}

// errorRate is the fixture's AnalysisTemplate query for a cluster and
// version.
func errorRate(cluster, version string) string {
	return fmt.Sprintf(`sum(rate(http_requests_total{status=~"5..",app=%q,track=%q}[2m])) / sum(rate(http_requests_total{app=%q,track=%q}[2m]))`,
		cluster, version, cluster, version)
}

// setVersion commits the fleet's version (with the test's Prometheus) and
// tells the hubs.
func (f *fleetOfFour) setVersion(t *testing.T, version string) {
	t.Helper()
	commit := f.git.WriteFiles(t, flotillatest.FixtureRepo, "main", "deploy: web "+version, map[string]string{
		"fleet/values.yaml": fmt.Sprintf("version: %s\nprometheus: %s\n", version, f.prom.URL),
	})
	f.versions[commit] = version
	f.webhook(t)
}

// webhook tells the hubs Git changed.
func (f *fleetOfFour) webhook(t *testing.T) {
	t.Helper()
	if code := flotillatest.PostWebhook(t, f.http, f.apiURLs[f.leader(t, -1)], webhookSecret); code != http.StatusAccepted {
		t.Fatalf("webhook: HTTP %d", code)
	}
}

// waitRollout waits until the web rollout of version, read through replica
// i, satisfies ok.
func (f *fleetOfFour) waitRollout(t *testing.T, i int, version string, timeout time.Duration, ok func(*flotillav1.FleetRollout) error) *flotillav1.FleetRollout {
	t.Helper()
	var r *flotillav1.FleetRollout
	testenv.Eventually(t, timeout, func() error {
		out, code := flotilla(t, "fleet", "status", "web", "-o", "json", "--hub", f.apiURLs[i], "--token", apiToken)
		if code != 0 {
			return fmt.Errorf("fleet status: exit %d: %s", code, out)
		}
		var resp flotillav1.GetFleetRolloutResponse
		if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
			return err
		}
		r = resp.GetRollout()
		if got := f.versionOf(t, r); got != version {
			return fmt.Errorf("rollout %s is of %s, want %s", r.GetId(), got, version)
		}
		if err := ok(r); err != nil {
			return fmt.Errorf("%w; rollout %s", err, describeRollout(r))
		}
		return nil
	})
	return r
}

// versionOf is the version a rollout releases: its commit's.
func (f *fleetOfFour) versionOf(_ *testing.T, r *flotillav1.FleetRollout) string {
	if v, ok := f.versions[r.GetRevision()]; ok {
		return v
	}
	return "commit " + r.GetRevision()
}

// reconciled waits until the leader finished a discovery-and-publish pass
// after a commit that changes nothing of the fleet: proof that what did
// not change was looked at.
func (f *fleetOfFour) reconciled(t *testing.T) {
	t.Helper()
	lead := f.leader(t, -1)
	passes := func() string {
		resp, err := f.http.Get(f.apiURLs[lead] + "/metrics")
		must(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return reconcilesOK.FindString(string(body))
	}
	before := passes()
	f.git.WriteFiles(t, flotillatest.FixtureRepo, "main", "docs: a note", map[string]string{"fleet/NOTES.md": time.Now().String()})
	f.webhook(t)
	testenv.Eventually(t, time.Minute, func() error {
		if after := passes(); after == before {
			return fmt.Errorf("no pass since %q", before)
		}
		return nil
	})
}

var reconcilesOK = regexp.MustCompile(`(?m)^flotilla_hub_reconciles_total\{result="ok"\} \d+$`)

// describeRollout says where a rollout is, wave by wave, for a failure.
func describeRollout(r *flotillav1.FleetRollout) string {
	out := fmt.Sprintf("%s %s at wave %d (%s)", r.GetId(), r.GetPhase(), r.GetCurrent(), r.GetMessage())
	for _, w := range r.GetWaves() {
		out += fmt.Sprintf("; wave %d %s %q:", w.GetIndex(), w.GetPhase(), w.GetMessage())
		for _, target := range w.GetTargets() {
			out += fmt.Sprintf(" %s history %d %q analysis %s", target.GetCluster(), target.GetHistoryId(), target.GetState(), target.GetAnalysis().GetAnalysis().GetPhase())
		}
	}
	return out
}

func inPhase(phase flotillav1.FleetPhase, wave int32) func(*flotillav1.FleetRollout) error {
	return func(r *flotillav1.FleetRollout) error {
		if r.GetPhase() != phase || r.GetCurrent() != wave {
			return fmt.Errorf("want %s at wave %d", phase, wave)
		}
		return nil
	}
}

// latest is the newest desired state of the web Application in cluster,
// verified.
func (f *fleetOfFour) latest(t *testing.T, cluster string) *flotillav1.DesiredState {
	t.Helper()
	entry, err := f.bus.GetDesired(t.Context(), cluster, "web-"+cluster)
	must(t, err)
	ds, err := f.verify.Verify(entry.State)
	must(t, err)
	return ds
}

// runs is the version the cluster's web ConfigMap holds.
func (f *fleetOfFour) runs(t *testing.T, cluster string) string {
	t.Helper()
	cm, err := getObject(t, f.clusters[cluster], configMaps, "web", "web")
	if err != nil {
		return err.Error()
	}
	return testenv.Field(cm, "data", "version")
}

func (f *fleetOfFour) waitRuns(t *testing.T, cluster, version string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		if got := f.runs(t, cluster); got != version {
			return fmt.Errorf("%s runs %s, want %s", cluster, got, version)
		}
		return nil
	})
}

// promote promotes the web rollout through replica i, again while the
// hub answers that NATS is unavailable (as after a failover, while the
// replicated streams elect their leaders), as an operator would.
// allOnV1 waits until every cluster runs v1 and its rollout succeeded.
// The clusters joined one by one while the first version rolled out:
// however far it got when each joined, it ends with all on v1, the
// approval the canary's wave waits for given through the leader lead.
func (f *fleetOfFour) allOnV1(t *testing.T, lead int) {
	t.Helper()
	testenv.Eventually(t, 4*time.Minute, func() error {
		r := f.waitRollout(t, lead, "v1", time.Minute, func(*flotillav1.FleetRollout) error { return nil })
		if r.GetPhase() == flotillav1.FleetPhase_FLEET_PHASE_PAUSED {
			f.promote(t, lead)
		}
		for _, c := range fleetStages {
			if got := f.runs(t, c.name); got != "v1" || r.GetPhase() != flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED {
				return fmt.Errorf("%s runs %s; rollout %s", c.name, got, describeRollout(r))
			}
		}
		return nil
	})
}

func (f *fleetOfFour) promote(t *testing.T, i int, args ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		out, code := flotilla(t, append([]string{"fleet", "promote", "web", "--hub", f.apiURLs[i], "--token", operatorToken}, args...)...)
		switch code {
		case 0:
			return nil
		case cli.ExitHubDown:
			return fmt.Errorf("fleet promote: exit %d: %s", code, out)
		}
		t.Fatalf("fleet promote: exit %d: %s", code, out)
		return nil
	})
}

// TestFleetRolloutInWaves: the web ApplicationSet (RollingSync with
// Flotilla's gates) across four real clusters, three hub replicas, a real
// Prometheus and simulated traffic. A good version passes every wave in
// order, waiting for an approval after the canary across a failover of
// the leading hub; a bad version fails its analysis in prod-canary,
// production never sees it and the canary (and staging) are rolled back
// by themselves; a newer commit mid-rollout supersedes the rollout.
func TestFleetRolloutInWaves(t *testing.T) {
	f := startFleetOfFour(t)
	lead := f.leader(t, -1)

	f.allOnV1(t, lead)

	step := newSteps(t)
	step.run("a good version passes every wave in order, across a failover of the leading hub", func(t *testing.T) {
		f.setVersion(t, "v2")
		r := f.waitRollout(t, lead, "v2", 3*time.Minute, inPhase(flotillav1.FleetPhase_FLEET_PHASE_PAUSED, 1))
		for _, w := range r.GetWaves()[:2] {
			for _, target := range w.GetTargets() {
				if a := target.GetAnalysis().GetAnalysis(); a.GetPhase() != "Successful" || len(a.GetMeasurements()) == 0 {
					t.Errorf("wave %d %s: analysis %v", w.GetIndex(), target.GetCluster(), a)
				}
			}
		}
		// The canary proved itself and waits for approval: production
		// still runs v1.
		for _, c := range []string{"prod-eu", "prod-us"} {
			if got := f.runs(t, c); got != "v1" {
				t.Errorf("%s runs %s before the approval", c, got)
			}
		}
		before := map[string]uint64{}
		for _, c := range []string{"staging-1", "prod-canary"} {
			before[c] = f.latest(t, c).GetHistoryId()
		}

		f.kill(t, lead)
		next := f.leader(t, lead)
		f.waitRollout(t, next, "v2", time.Minute, inPhase(flotillav1.FleetPhase_FLEET_PHASE_PAUSED, 1))
		f.promote(t, next, "--wave", "1")
		f.start(t, lead)
		r = f.waitRollout(t, next, "v2", 3*time.Minute, inPhase(flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED, 2))
		if got := r.GetWaves()[1].GetApprovedBy(); got != "oncall" {
			t.Errorf("wave 1 approved by %q", got)
		}
		for _, c := range fleetStages {
			f.waitRuns(t, c.name, "v2")
		}
		// The new leader did not publish the finished waves again.
		for c, id := range before {
			if got := f.latest(t, c).GetHistoryId(); got != id {
				t.Errorf("%s: history %d after the failover, was %d", c, got, id)
			}
		}
		// Each wave was published after the one before it was healthy.
		published := func(c string) time.Time { return f.latest(t, c).GetPublishedAt().AsTime() }
		healthy := func(i int) time.Time { return r.GetWaves()[i].GetHealthyAt().AsTime() }
		if !published("staging-1").Before(healthy(0)) || !healthy(0).Before(published("prod-canary")) ||
			!healthy(1).Before(published("prod-eu")) || !healthy(1).Before(published("prod-us")) {
			t.Errorf("out of order: staging published %v healthy %v; canary published %v healthy %v; eu %v, us %v",
				published("staging-1"), healthy(0), published("prod-canary"), healthy(1), published("prod-eu"), published("prod-us"))
		}
	})

	lead = f.leader(t, -1)
	step.run("a bad version fails its analysis in the canary: production never sees it, the canary is rolled back", func(t *testing.T) {
		production := map[string]uint64{}
		for _, c := range []string{"prod-eu", "prod-us"} {
			production[c] = f.latest(t, c).GetHistoryId()
		}
		f.setVersion(t, "v3")
		r := f.waitRollout(t, lead, "v3", 3*time.Minute, func(r *flotillav1.FleetRollout) error {
			if r.GetPhase() != flotillav1.FleetPhase_FLEET_PHASE_FAILED || !r.GetRolledBack() {
				return fmt.Errorf("not failed and rolled back")
			}
			return nil
		})
		if r.GetCurrent() != 1 || !strings.Contains(r.GetMessage(), "prod-canary: Failed") || !strings.Contains(r.GetMessage(), "error-rate=") {
			t.Errorf("rollout %s at wave %d: %s", r.GetPhase(), r.GetCurrent(), r.GetMessage())
		}
		for _, c := range []string{"staging-1", "prod-canary"} {
			f.waitRuns(t, c, "v2")
			ds := f.latest(t, c)
			if pin := ds.GetPin(); !strings.Contains(pin.GetReason(), "wave 1 failed") || ds.GetInitiator() != flotillav1.Initiator_INITIATOR_ROLLBACK {
				t.Errorf("%s: newest entry %d is not the fleet's rollback: pin %v", c, ds.GetHistoryId(), pin)
			}
		}
		// Another pass of the leader changes nothing.
		f.reconciled(t)
		for c, id := range production {
			if got := f.latest(t, c).GetHistoryId(); got != id || f.runs(t, c) != "v2" {
				t.Errorf("%s: history %d running %s, want %d running v2", c, got, f.runs(t, c), id)
			}
		}
	})

	step.run("a newer commit mid-rollout supersedes it", func(t *testing.T) {
		f.setVersion(t, "v4")
		first := f.waitRollout(t, lead, "v4", time.Minute, inPhase(flotillav1.FleetPhase_FLEET_PHASE_PROGRESSING, 0))
		f.setVersion(t, "v5")
		r := f.waitRollout(t, lead, "v5", 3*time.Minute, inPhase(flotillav1.FleetPhase_FLEET_PHASE_PAUSED, 1))
		if r.GetId() == first.GetId() {
			t.Fatalf("v5 continued rollout %s", first.GetId())
		}
		f.waitRuns(t, "prod-canary", "v5")
		history, code := flotilla(t, "app", "history", "web-prod-canary", "-o", "json", "--hub", f.apiURLs[lead], "--token", apiToken)
		if code != 0 || strings.Contains(history, first.GetRevision()) {
			t.Errorf("the canary got v4's commit %s (exit %d):\n%s", first.GetRevision(), code, history)
		}
		f.promote(t, lead)
		f.waitRollout(t, lead, "v5", 3*time.Minute, inPhase(flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED, 2))
		for _, c := range fleetStages {
			f.waitRuns(t, c.name, "v5")
		}
	})
}
