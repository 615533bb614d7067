package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-dev/flotilla/internal/cli"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// historyEntry is the JSON of one `flotilla app history -o json` entry.
type historyEntry struct {
	Cluster   string `json:"cluster"`
	HistoryID string `json:"historyId"`
	Current   bool   `json:"current"`
	Result    string `json:"result"`
	Initiator string `json:"initiator"`
	Source    struct {
		Commit        string `json:"commit"`
		CommitMessage string `json:"commitMessage"`
	} `json:"source"`
}

// TestOperatorRollsBackAt2AM is the user story's emergency: v1 runs, v2
// ships, and one command puts v1 back while auto-sync stays on; then the
// same through Git. Every verb runs through the CLI against the real API.
func TestOperatorRollsBackAt2AM(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu", Workloads: true})
	startAgent(t, e, prod, map[string]string{"env": "production"}, t.TempDir())
	viewer := []string{"--hub", e.APIURL, "--token", apiToken}
	operator := []string{"--hub", e.APIURL, "--token", operatorToken}
	run := func(t *testing.T, wantCode int, args ...string) string {
		t.Helper()
		out, code := flotilla(t, args...)
		if code != wantCode {
			t.Fatalf("flotilla %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, wantCode, out)
		}
		return out
	}
	history := func(t *testing.T) []historyEntry {
		t.Helper()
		var resp struct {
			Entries []historyEntry `json:"entries"`
		}
		out := run(t, 0, append([]string{"app", "history", "api-service", "--cluster", "prod-eu", "-o", "json"}, viewer...)...)
		must(t, json.Unmarshal([]byte(out), &resp))
		return resp.Entries
	}

	// v1 is the fixture's 1.4.2; v2 is a CI tag bump.
	waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.4.2")
	v1 := e.waitDesired(t, "prod-eu", "api-service", hasHistory(1))
	values := readFixture(t, "environments/production/api-service-values.yaml")
	e.Commit(t, "deploy: api-service 1.5.0", map[string]string{
		"environments/production/api-service-values.yaml": strings.Replace(values, `tag: "1.4.2"`, `tag: "1.5.0"`, 1),
	})
	e.Webhook(t, webhookSecret)
	waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.5.0")

	// Each step starts from the state the steps before it left.
	step := newSteps(t)
	step.run("history lists both deployments newest first", func(t *testing.T) {
		var entries []historyEntry
		testenv.Eventually(t, 30*time.Second, func() error {
			entries = history(t)
			if len(entries) != 2 || entries[0].Result != "Succeeded" {
				return fmt.Errorf("history: %+v", entries)
			}
			return nil
		})
		if !entries[0].Current || entries[0].HistoryID != "2" || !strings.Contains(entries[0].Source.CommitMessage, "1.5.0") ||
			entries[1].HistoryID != strconv.FormatUint(v1.GetHistoryId(), 10) || entries[1].Source.Commit != v1.GetSource().GetCommit() ||
			entries[1].Result != "Succeeded" || entries[1].Initiator != "INITIATOR_GIT" {
			t.Errorf("history = %+v", entries)
		}
		table := run(t, 0, append([]string{"app", "history", "api-service"}, viewer...)...)
		if !strings.Contains(table, "2*") || !strings.Contains(table, "deploy: api-service 1.5.0") {
			t.Errorf("history table:\n%s", table)
		}
	})

	step.run("a viewer may not roll back, and the attempt is audited", func(t *testing.T) {
		out := run(t, cli.ExitAuth, append([]string{"app", "rollback", "api-service", "--revision", "1"}, viewer...)...)
		if !strings.Contains(out, `token "ops" may not call`) {
			t.Errorf("output: %s", out)
		}
	})

	step.run("rollback by history id returns v1 and pins it", func(t *testing.T) {
		out := run(t, 0, append([]string{"app", "rollback", "api-service", "--revision", "1"}, operator...)...)
		if !strings.Contains(out, "prod-eu") || !strings.Contains(out, "rolled back to 1 and pinned (history 3)") {
			t.Errorf("output: %s", out)
		}
		waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.4.2")
		var get string
		testenv.Eventually(t, 10*time.Second, func() error {
			get = run(t, 0, append([]string{"app", "get", "api-service"}, viewer...)...)
			if !strings.Contains(get, "prod-eu (history 3):") {
				return fmt.Errorf("app get:\n%s", get)
			}
			return nil
		})
		if !strings.Contains(get, "3 (pinned to 1 by oncall)") || !strings.Contains(get, "Rollout.argoproj.io") {
			t.Errorf("app get does not show the pin and the objects:\n%s", get)
		}
	})

	step.run("the pin survives polls and commits to other apps", func(t *testing.T) {
		e.Webhook(t, webhookSecret) // a poll that finds nothing new
		e.Commit(t, "deploy: worker-service 2.5.0", map[string]string{
			"environments/production/worker-service-values.yaml": "replicaCount: 2\nimage:\n  tag: \"2.5.0\"\nqueue: jobs-production\n",
		})
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.5.0")
		ds, _, err := e.desired(t, "prod-eu", "api-service")
		must(t, err)
		if ds.GetHistoryId() != 3 || ds.GetPin().GetRolledBackTo() != 1 {
			t.Errorf("api-service after other commits: history %d, pin %v", ds.GetHistoryId(), ds.GetPin())
		}
		ro, err := getObject(t, prod, rolloutsGVR, "production", "api-service")
		must(t, err)
		if !strings.HasSuffix(testenv.Image(ro), ":1.4.2") {
			t.Errorf("the pinned rollback was undone: %s", testenv.Image(ro))
		}
	})

	step.run("diff shows drift and sync heals it", func(t *testing.T) {
		out := run(t, 0, append([]string{"app", "diff", "api-service"}, viewer...)...)
		if !strings.Contains(out, "prod-eu (history 3): in sync") {
			t.Errorf("diff of a synced app:\n%s", out)
		}
		// With selfHeal on the agent would undo the edit before the diff.
		e.Commit(t, "worker-service: selfHeal off", map[string]string{
			"apps/worker-service.yaml": strings.Replace(readFixture(t, "apps/worker-service.yaml"), "selfHeal: true", "selfHeal: false", 1),
		})
		e.Webhook(t, webhookSecret)
		e.waitDesired(t, "prod-eu", "worker-service", func(ds *flotillav1.DesiredState) error {
			if ds.GetSyncPolicy().GetAutomated().GetSelfHeal() {
				return fmt.Errorf("selfHeal still on")
			}
			return nil
		})
		e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if ds, _, _ := e.desired(t, "prod-eu", "worker-service"); st.GetHistoryId() != ds.GetHistoryId() || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
				return fmt.Errorf("status of history %d: %v", st.GetHistoryId(), st.GetPhase())
			}
			return nil
		})
		patch := `{"data":{"QUEUE":"hand-edited"}}`
		_, err := prod.Dynamic.Resource(configmaps).Namespace("production").Patch(context.Background(), "worker-service-config",
			types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"})
		must(t, err)
		out = run(t, cli.ExitDiffers, append([]string{"app", "diff", "worker-service"}, viewer...)...)
		if !strings.Contains(out, "1 objects differ") || !strings.Contains(out, "-  QUEUE: hand-edited") || !strings.Contains(out, "+  QUEUE: jobs-production") {
			t.Errorf("diff after a hand edit:\n%s", out)
		}
		out = run(t, 0, append([]string{"app", "sync", "worker-service", "--cluster", "prod-eu", "--wait"}, operator...)...)
		if !strings.Contains(out, "synced") || !strings.Contains(out, "Succeeded Healthy") {
			t.Errorf("sync output:\n%s", out)
		}
		cm, err := getObject(t, prod, configmaps, "production", "worker-service-config")
		must(t, err)
		if q, _, _ := unstructured.NestedString(cm.Object, "data", "QUEUE"); q != "jobs-production" {
			t.Errorf("sync did not heal the hand edit: QUEUE=%q", q)
		}
	})

	step.run("unpin follows Git again", func(t *testing.T) {
		out := run(t, 0, append([]string{"app", "unpin", "api-service"}, operator...)...)
		if !strings.Contains(out, "unpinned (history 4)") {
			t.Errorf("output: %s", out)
		}
		waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.5.0")
		run(t, cli.ExitFailure, append([]string{"app", "unpin", "api-service"}, operator...)...)
	})

	step.run("a new commit to the app releases the pin", func(t *testing.T) {
		run(t, 0, append([]string{"app", "rollback", "api-service", "--revision", "1", "--cluster", "prod-eu"}, operator...)...)
		waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.4.2")
		e.Commit(t, "deploy: api-service 1.6.0", map[string]string{
			"environments/production/api-service-values.yaml": strings.Replace(values, `tag: "1.4.2"`, `tag: "1.6.0"`, 1),
		})
		e.Webhook(t, webhookSecret)
		waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.6.0")
		ds, _, err := e.desired(t, "prod-eu", "api-service")
		must(t, err)
		if ds.GetPin() != nil || ds.GetInitiator().String() != "INITIATOR_GIT" {
			t.Errorf("after a commit to the app: pin %v, initiator %v", ds.GetPin(), ds.GetInitiator())
		}
	})

	step.run("rollback through Git leaves a revert commit and the fleet follows", func(t *testing.T) {
		before := e.Git.Head(t, flotillatest.FixtureRepo, "main")
		out := run(t, 0, append([]string{"app", "rollback", "worker-service", "--git", "--wait"}, operator...)...)
		if !strings.Contains(out, "pushed") || !strings.Contains(out, "prod-eu  published (history") || !strings.Contains(out, "Succeeded Healthy") {
			t.Errorf("output:\n%s", out)
		}
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
		head := e.Git.Head(t, flotillatest.FixtureRepo, "main")
		msg := testenv.Git(t, e.Git.BareDir(flotillatest.FixtureRepo), "log", "-1", "--format=%an%n%B", head)
		if !strings.Contains(msg, `Revert "deploy: worker-service 2.5.0"`) || !strings.Contains(msg, "Requested by oncall") {
			t.Errorf("revert commit:\n%s", msg)
		}
		if parent := testenv.Git(t, e.Git.BareDir(flotillatest.FixtureRepo), "rev-parse", head+"^"); parent != before {
			t.Errorf("the revert is not on top of %s: %s", before, parent)
		}
	})

	step.run("rollout verbs patch the Rollout as the Argo Rollouts plugin does", func(t *testing.T) {
		rollout := func() *unstructured.Unstructured {
			ro, err := getObject(t, prod, rolloutsGVR, "production", "api-service")
			must(t, err)
			return ro
		}
		out := run(t, 0, append([]string{"rollout", "pause", "api-service"}, operator...)...)
		if !strings.Contains(out, "prod-eu") || !strings.Contains(out, "pause: Rollout/production/api-service") {
			t.Errorf("pause output: %s", out)
		}
		if p, _, _ := unstructured.NestedBool(rollout().Object, "spec", "paused"); !p {
			t.Error("pause did not set spec.paused")
		}
		run(t, 0, append([]string{"rollout", "promote", "api-service", "--cluster", "prod-eu"}, operator...)...)
		ro := rollout()
		if p, _, _ := unstructured.NestedBool(ro.Object, "spec", "paused"); p {
			t.Error("promote did not unpause")
		}
		if i, _, _ := unstructured.NestedInt64(ro.Object, "status", "currentStepIndex"); i != 1 {
			t.Errorf("promote of a canary with no pause moved to step %d, want 1", i)
		}
		run(t, 0, append([]string{"rollout", "abort", "api-service"}, operator...)...)
		if a, _, _ := unstructured.NestedBool(rollout().Object, "status", "abort"); !a {
			t.Error("abort did not set status.abort")
		}
		run(t, 0, append([]string{"rollout", "retry", "api-service"}, operator...)...)
		if a, found, _ := unstructured.NestedBool(rollout().Object, "status", "abort"); !found || a {
			t.Error("retry did not clear status.abort")
		}
		run(t, 0, append([]string{"rollout", "promote", "api-service", "--full"}, operator...)...)
		if f, _, _ := unstructured.NestedBool(rollout().Object, "status", "promoteFull"); !f {
			t.Error("promote --full did not set status.promoteFull")
		}
		out = run(t, cli.ExitFailure, append([]string{"rollout", "pause", "worker-service"}, operator...)...)
		if !strings.Contains(out, "worker-service manages no Rollout") {
			t.Errorf("an app without a Rollout: %s", out)
		}
		run(t, cli.ExitAuth, append([]string{"rollout", "abort", "api-service"}, viewer...)...)
		run(t, cli.ExitUsage, append([]string{"rollout", "abort", "api-service", "--full"}, operator...)...)
	})

	step.run("an agent refuses a command the hub did not sign", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		forged, err := signing.NewSigner(other).SignCommand(&flotillav1.AgentCommand{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service",
			IssuedAt: timestamppb.Now(), Command: &flotillav1.AgentCommand_Sync{Sync: &flotillav1.SyncCommand{}}})
		must(t, err)
		reply, err := e.Bus.Command(t.Context(), "prod-eu", forged)
		must(t, err)
		if !strings.Contains(reply.GetError(), "command refused") || !strings.Contains(reply.GetError(), "unknown key") {
			t.Errorf("reply to a forged command: %v", reply)
		}
	})

	step.run("bad input is one line with a meaningful exit code", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"unknown history id", append([]string{"app", "rollback", "api-service", "--revision", "99"}, operator...), cli.ExitNotFound, "history id 99"},
			{"unknown app", append([]string{"app", "rollback", "nope", "--revision", "1"}, operator...), cli.ExitNotFound, `"nope" is not published`},
			{"unknown cluster", append([]string{"app", "sync", "api-service", "--cluster", "nowhere"}, operator...), cli.ExitNotFound, `cluster "nowhere"`},
			{"both kinds of rollback", append([]string{"app", "rollback", "api-service", "--revision", "1", "--git"}, operator...), cli.ExitUsage, "exactly one"},
			{"neither kind", append([]string{"app", "rollback", "api-service"}, operator...), cli.ExitUsage, "exactly one"},
			{"viewer syncs", append([]string{"app", "sync", "api-service"}, viewer...), cli.ExitAuth, "may not call"},
			{"history of unknown app", append([]string{"app", "history", "nope"}, viewer...), cli.ExitNotFound, `"nope"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, code := flotilla(t, tc.args...)
				if code != tc.code || !strings.Contains(out, tc.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
					t.Fatalf("exit %d (want %d), output %q (want one line with %q)", code, tc.code, out, tc.want)
				}
			})
		}
	})

	step.run("every mutating call is in the audit stream", func(t *testing.T) {
		var resp struct {
			Events []struct {
				Reason  string `json:"reason"`
				Actor   string `json:"actor"`
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"events"`
		}
		out := run(t, 0, append([]string{"events", "--limit", "500", "-o", "json"}, viewer...)...)
		must(t, json.Unmarshal([]byte(out), &resp))
		want := map[string]bool{"oncall RollbackApp": false, "ops RollbackApp": false, "oncall SyncApp": false, "oncall UnpinApp": false, "oncall RevertApp": false, "oncall RolloutApp": false}
		for _, ev := range resp.Events {
			if ev.Reason != "Audit" {
				continue
			}
			for k := range want {
				if strings.HasPrefix(ev.Message, k) {
					want[k] = true
				}
			}
			if strings.Contains(ev.Message, operatorToken) || strings.Contains(ev.Message, apiToken) {
				t.Errorf("an audit entry carries a token: %s", ev.Message)
			}
		}
		for k, seen := range want {
			if !seen {
				t.Errorf("no audit entry for %q", k)
			}
		}
	})
}
