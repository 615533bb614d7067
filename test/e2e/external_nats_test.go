package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/clustercreds"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// TestExternalOperatorManagedNATS runs the hub and an agent against a NATS
// server the hub does not run: an operator's, in operator mode behind TLS
// from the operator's own CA, whose users carry exactly the permissions
// docs/architecture.md gives each role. The hub's bundles then hold no
// NATS credentials, and revoking a cluster's NATS user is the operator's.
func TestExternalOperatorManagedNATS(t *testing.T) {
	op := startOperatorNATS(t)
	authority, natsURL, caFile, hubCredsFile := op.authority, op.url, op.caFile, op.hubCredsFile

	h := flotillatest.StartHub(t, flotillatest.HubOptions{
		ExternalNATS: &flotillatest.ExternalNATS{URL: natsURL, CredentialsFile: hubCredsFile, CAFile: caFile}})
	hubKey, err := signing.ParsePublicKey(h.PublicKeyPEM)
	must(t, err)
	e := &hubEnv{Hub: h, verify: signing.NewVerifier(hubKey)}
	if e.NATSURL != natsURL {
		t.Fatalf("the hub's NATS URL is %s, want the operator's %s", e.NATSURL, natsURL)
	}

	// `flotilla cluster add` names the operator's server and CA, and signs
	// no NATS user: the hub has no keys to sign one with. The operator adds
	// the cluster's user to the bundle.
	production := map[string]string{"env": "production"}
	bundleDir := e.Credentials(t, "prod-eu", production)
	bundle, err := clustercreds.Read(bundleDir)
	must(t, err)
	operatorCA, err := os.ReadFile(caFile)
	must(t, err)
	if bundle.GetNatsUrl() != natsURL || len(bundle.GetNatsCreds()) != 0 || !bytes.Equal(bundle.GetCa(), operatorCA) {
		t.Fatalf("bundle: url %s, %d bytes of NATS credentials, CA is the operator's: %t; want %s, none, true",
			bundle.GetNatsUrl(), len(bundle.GetNatsCreds()), bytes.Equal(bundle.GetCa(), operatorCA), natsURL)
	}
	prodCreds, prodUserKey, err := authority.User("prod-eu", natsauth.ClusterPermissions("prod-eu"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(bundleDir, clustercreds.NATSCredsFile), prodCreds, 0o600))

	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu"})
	prodAgent := startAgent(t, e, prod, production, t.TempDir())
	// staging-1 has no agent: its desired states say what the hub published.
	e.Register(t, "staging-1", map[string]string{"env": "staging"})

	step := newSteps(t)
	step.run("the agent converges through the operator's server", func(t *testing.T) {
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
		e.WaitStatus(t, "prod-eu", "worker-service", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetPhase() != flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED || st.GetSyncStatus() != flotillav1.SyncStatus_SYNC_STATUS_SYNCED {
				return fmt.Errorf("status %v %v: %s", st.GetPhase(), st.GetSyncStatus(), st.GetMessage())
			}
			return nil
		})
	})

	step.run("the cluster's user reaches nothing of another cluster's", func(t *testing.T) {
		a := e.ClusterConn(t, "prod-eu", nil, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		short := func() context.Context {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			t.Cleanup(cancel)
			return ctx
		}
		if err := a.PutStatus(short(), &flotillav1.AppStatus{Cluster: "staging-1", App: "worker-service", Message: "forged"}); err == nil {
			t.Error("prod-eu's user wrote staging-1's status")
		}
		if _, err := (&bus.Bus{Conn: a}).PublishDesired(short(), []bus.DesiredPut{{Cluster: "prod-eu", App: "worker-service",
			State: &flotillav1.SignedDesiredState{SchemaVersion: 1}}}); err == nil {
			t.Error("prod-eu's user published a desired state")
		}
		if st, err := e.Bus.GetStatus(t.Context(), "staging-1", "worker-service"); !errors.Is(err, bus.ErrNotFound) {
			t.Errorf("staging-1 has a status: %v, %v", st, err)
		}
	})

	step.run("the operator revokes the NATS user: the agent is cut off", func(t *testing.T) {
		// Before `cluster revoke`: a revoked cluster's applications are no
		// longer desired, so the hub publishes a deletion of each, and an
		// agent still connected would delete its workloads.
		must(t, authority.Revoke(prodUserKey))
		testenv.Eventually(t, 30*time.Second, func() error {
			if !strings.Contains(prodAgent.logs.String(), "NATS refuses this cluster's credentials") {
				return errors.New("the agent's log does not say its credentials were refused")
			}
			return nil
		})
		user, err := natsauth.Credentials(prodCreds)
		must(t, err)
		if nc, err := nats.Connect(natsURL, user, nats.RootCAs(caFile), nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Error("the revoked user connected again")
		}
		if prodAgent.exited() {
			t.Error("the revoked cluster's agent stopped; it must retry with backoff")
		}
	})

	step.run("the hub revokes the identity, and cannot revoke the operator's users", func(t *testing.T) {
		// A second user the operator gave prod-eu, which only the operator
		// can revoke.
		spareCreds, _, err := authority.User("prod-eu", natsauth.ClusterPermissions("prod-eu"))
		must(t, err)
		spareOpts, err := natsauth.ClusterOptions("prod-eu", spareCreds)
		must(t, err)
		closed := make(chan struct{})
		spare, err := nats.Connect(natsURL, append(spareOpts, nats.RootCAs(caFile), nats.NoReconnect(),
			nats.ClosedHandler(func(*nats.Conn) { close(closed) }), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
		must(t, err)
		defer spare.Close()

		out, code := flotilla(t, "cluster", "revoke", "prod-eu", "--hub", e.APIURL, "--token", adminToken)
		if code != 0 || !strings.Contains(out, "revoked") {
			t.Fatalf("cluster revoke: exit %d: %s", code, out)
		}
		list, _ := flotilla(t, "cluster", "list", "--hub", e.APIURL, "--token", apiToken)
		if !strings.Contains(list, "prod-eu") || !strings.Contains(list, "revoked") {
			t.Errorf("cluster list does not show prod-eu revoked:\n%s", list)
		}

		// The hub publishes nothing more for prod-eu: a commit for both
		// environments reaches staging-1 only (which, published after
		// prod-eu's would be, says the hub is done with the commit).
		const message = "deploy: worker-service everywhere"
		e.Commit(t, message, map[string]string{
			"environments/production/worker-service-values.yaml": strings.Replace(readFixture(t, "environments/production/worker-service-values.yaml"), "2.3.0", "2.3.1", 1),
			"environments/staging/worker-service-values.yaml":    strings.Replace(readFixture(t, "environments/staging/worker-service-values.yaml"), "2.4.0-rc.2", "2.4.0-rc.3", 1),
		})
		e.Webhook(t, webhookSecret)
		e.waitDesired(t, "staging-1", "worker-service", func(ds *flotillav1.DesiredState) error {
			if strings.TrimSpace(ds.GetSource().GetCommitMessage()) != message {
				return errors.New("not published yet")
			}
			return nil
		})
		if ds, _, err := e.desired(t, "prod-eu", "worker-service"); err != nil || strings.TrimSpace(ds.GetSource().GetCommitMessage()) == message {
			t.Errorf("the hub published the commit for the revoked prod-eu: %v, %v", ds, err)
		}

		// The operator's server knows nothing of the hub's revocation.
		if err := spare.Flush(); err != nil || spare.IsClosed() {
			t.Errorf("the hub's revocation reached the operator's user: %v", err)
		}
		select {
		case <-closed:
			t.Error("the hub's revocation closed the operator's user")
		default:
		}
		// Cut off before the hub's revocation, the agent changed nothing.
		waitImage(t, prod, deployments, "production", "worker-service", "worker-service:2.3.0")
	})
}
