package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/internal/clustercreds"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
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
	st := e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
		if st.GetHistoryId() != ds.GetHistoryId() || st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED {
			return fmt.Errorf("status history %d %v, want %d Succeeded", st.GetHistoryId(), st.GetPhase(), ds.GetHistoryId())
		}
		return nil
	})
	_ = st
	// One sync after the outage, to the newest desired state.
	testenv.Eventually(t, 30*time.Second, func() error {
		events, err := e.Bus.Events(t.Context(), "prod-eu", "worker-service", 200)
		if err != nil {
			return err
		}
		var synced []uint64
		for _, ev := range events {
			if ev.GetReason() == flotillav1.ReasonSyncSucceeded && ev.GetHistoryId() > before.GetHistoryId() {
				synced = append(synced, ev.GetHistoryId())
			}
		}
		if len(synced) != 1 || synced[0] != ds.GetHistoryId() {
			return fmt.Errorf("syncs after the outage: %v, want one, of history %d", synced, ds.GetHistoryId())
		}
		return nil
	})
}
