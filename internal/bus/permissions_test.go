package bus

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-dev/flotilla/internal/natsauth"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// violations records the permission violations the server reports to one
// connection.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

// waitFor waits until the server reported a violation naming subject.
func (v *violations) waitFor(t *testing.T, subject string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, e := range v.errs {
			if strings.Contains(strings.ToLower(e), "permissions violation") && strings.Contains(e, subject) {
				return nil
			}
		}
		return errors.New("no permissions violation for " + subject + " in " + strings.Join(v.errs, "; "))
	})
}

// TestClusterPermissions proves each allow and each deny of
// natsauth.ClusterPermissions against the real server: cluster prod-eu's
// credentials do everything its agent does, on its own keys, and nothing
// on staging-1's or on the fleet's resources.
func TestClusterPermissions(t *testing.T) {
	s := startServer(t)
	hub := s.provision(nil)
	ctx := t.Context()
	publish(t, hub, "prod-eu", "api", 1)
	publish(t, hub, "staging-1", "api", 1)
	if _, err := hub.PutArtifact(ctx, "sha256:prod", []byte("prod's artifact")); err != nil {
		t.Fatal(err)
	}
	// An artifact of several chunks, read with a consumer, not a direct get.
	big := bytes.Repeat([]byte("chart "), 500_000)
	if _, err := hub.PutArtifact(ctx, "sha256:big", big); err != nil {
		t.Fatal(err)
	}
	if err := hub.PutStatus(ctx, &flotillav1.AppStatus{Cluster: "staging-1", App: "api", Message: "staging's"}); err != nil {
		t.Fatal(err)
	}

	v := &violations{}
	nc := s.connectCluster("prod-eu", nats.ErrorHandler(v.handler))
	agent, err := Open(nc)
	if err != nil {
		t.Fatal(err)
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, time.Second)
		t.Cleanup(cancel)
		return c
	}

	t.Run("allowed: what its agent does", func(t *testing.T) {
		var got []DesiredEntry
		newest, err := agent.catchUpDesired(ctx, kvSubject(DesiredBucket, "prod-eu.>"), func(e DesiredEntry) bool { got = append(got, e); return true })
		if err != nil || len(got) != 1 {
			t.Errorf("catch-up of its own desired states = %d entries, %v", len(got), err)
		}
		if !agent.unchangedSince(ctx, kvSubject(DesiredBucket, "prod-eu.>"), newest) {
			t.Errorf("the newest of its own desired states: not read, or not the catch-up's")
		}
		if data, err := agent.GetArtifact(ctx, "sha256:prod"); err != nil || string(data) != "prod's artifact" {
			t.Errorf("GetArtifact = %q, %v", data, err)
		}
		if data, err := agent.GetArtifact(ctx, "sha256:big"); err != nil || !bytes.Equal(data, big) {
			t.Errorf("GetArtifact of several chunks = %d bytes, %v; want %d", len(data), err, len(big))
		}
		if err := agent.PutStatus(ctx, &flotillav1.AppStatus{Cluster: "prod-eu", App: "api", Message: "mine"}); err != nil {
			t.Errorf("PutStatus: %v", err)
		}
		if st, err := agent.GetStatus(ctx, "prod-eu", "api"); err != nil || st.GetMessage() != "mine" {
			t.Errorf("GetStatus of its own = %v, %v", st, err)
		}
		if err := agent.Register(ctx, &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: "prod-eu"}); err != nil {
			t.Errorf("Register: %v", err)
		}
		if err := agent.AppendEvent(ctx, &flotillav1.Event{Cluster: "prod-eu", App: "api", Reason: "Synced"}); err != nil {
			t.Errorf("AppendEvent: %v", err)
		}
		if err := agent.ServeCommands(ctx, "prod-eu", func(context.Context, *flotillav1.SignedAgentCommand) *flotillav1.AgentReply {
			return &flotillav1.AgentReply{SchemaVersion: 1, HistoryId: 7}
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() error {
			reply, err := hub.Command(short(), "prod-eu", &flotillav1.SignedAgentCommand{SchemaVersion: 1})
			if err == nil && reply.GetHistoryId() != 7 {
				err = errors.New("not the agent's reply")
			}
			return err
		})
	})

	// Each attack must fail at the server; where the client cannot tell a
	// refusal from silence, the violation the server reported is the proof.
	for _, tc := range []struct {
		name    string
		attack  func() error
		subject string // the violation the server reports
	}{
		{"write another cluster's status", func() error {
			return agent.PutStatus(short(), &flotillav1.AppStatus{Cluster: "staging-1", App: "api", Message: "forged"})
		}, "$KV.flotilla-status.staging-1.api"},
		{"write another cluster's registration", func() error {
			return agent.Register(short(), &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: "staging-1", Labels: map[string]string{"env": "production"}})
		}, "$KV.flotilla-clusters.staging-1"},
		{"write another cluster's events", func() error {
			return agent.AppendEvent(short(), &flotillav1.Event{Cluster: "staging-1", Reason: "Audit"})
		}, "flotilla.events.staging-1._"},
		{"write the hub's events", func() error {
			return agent.AppendEvent(short(), &flotillav1.Event{Reason: "Audit"})
		}, "flotilla.events._hub._"},
		{"read another cluster's status", func() error {
			_, err := agent.GetStatus(short(), "staging-1", "api")
			return err
		}, "$JS.API.DIRECT.GET.KV_flotilla-status.$KV.flotilla-status.staging-1.api"},
		{"publish a desired state, even its own", func() error {
			_, err := (&Bus{Conn: agent}).PublishDesired(short(), []DesiredPut{{Cluster: "prod-eu", App: "api", State: state(t, "prod-eu", "api", 9)}})
			return err
		}, "$KV.flotilla-desired.prod-eu.api"},
		{"catch up on another cluster's desired states", func() error {
			_, err := agent.catchUpDesired(short(), kvSubject(DesiredBucket, "staging-1.>"), func(DesiredEntry) bool { return true })
			return err
		}, "$KV.flotilla-desired.staging-1.>"},
		{"read the newest of another cluster's desired states", func() error {
			_, err := nc.Request("$JS.API.DIRECT.GET.KV_"+DesiredBucket+"."+kvSubject(DesiredBucket, "staging-1.>"), nil, time.Second)
			return err
		}, "$JS.API.DIRECT.GET.KV_flotilla-desired.$KV.flotilla-desired.staging-1.>"},
		{"read the newest desired state of every cluster", func() error {
			_, err := nc.Request("$JS.API.DIRECT.GET.KV_"+DesiredBucket+"."+kvSubject(DesiredBucket, ">"), nil, time.Second)
			return err
		}, "$JS.API.DIRECT.GET.KV_flotilla-desired.$KV.flotilla-desired.>"},
		{"read desired states by a request's body", func() error {
			_, err := nc.Request("$JS.API.DIRECT.GET.KV_"+DesiredBucket, []byte(`{"multi_last":["$KV.flotilla-desired.staging-1.>"]}`), time.Second)
			return err
		}, "$JS.API.DIRECT.GET.KV_flotilla-desired"},
		{"read every desired state", func() error {
			return agent.drain(short(), "KV_"+DesiredBucket, "", jetstream.DeliverAllPolicy, func(jetstream.Msg) {})
		}, "$JS.API.CONSUMER.CREATE.KV_flotilla-desired"},
		{"subscribe to another cluster's desired states", func() error {
			_, err := nc.SubscribeSync(kvSubject(DesiredBucket, "staging-1.>"))
			return errors.Join(err, nc.Flush(), errors.New("refused asynchronously"))
		}, "$KV.flotilla-desired.staging-1.>"},
		{"subscribe to another cluster's commands", func() error {
			_, err := nc.SubscribeSync(commandSubject("staging-1"))
			return errors.Join(err, nc.Flush(), errors.New("refused asynchronously"))
		}, "flotilla.cmd.staging-1"},
		{"send a command", func() error {
			_, err := nc.Request(commandSubject("staging-1"), []byte("x"), time.Second)
			return err
		}, "flotilla.cmd.staging-1"},
		{"subscribe to the hub's replies", func() error {
			_, err := nc.SubscribeSync("_INBOX.>")
			return errors.Join(err, nc.Flush(), errors.New("refused asynchronously"))
		}, "_INBOX.>"},
		{"list the buckets' keys (stream info)", func() error {
			_, err := jetstream.New(nc)
			if err == nil {
				js, _ := jetstream.New(nc)
				_, err = js.Stream(short(), "KV_"+DesiredBucket)
			}
			return err
		}, "$JS.API.STREAM.INFO.KV_flotilla-desired"},
		{"list the artifacts", func() error {
			js, _ := jetstream.New(nc)
			_, err := js.ObjectStore(short(), ArtifactStore)
			return err
		}, "$JS.API.STREAM.INFO.OBJ_flotilla-artifacts"},
		{"read artifacts by sequence", func() error {
			_, err := nc.Request("$JS.API.DIRECT.GET.OBJ_"+ArtifactStore, []byte(`{"seq":1}`), time.Second)
			return err
		}, "$JS.API.DIRECT.GET.OBJ_flotilla-artifacts"},
		{"read messages by sequence", func() error {
			_, err := nc.Request("$JS.API.STREAM.MSG.GET.KV_"+DesiredBucket, []byte(`{"seq":1}`), time.Second)
			return err
		}, "$JS.API.STREAM.MSG.GET.KV_flotilla-desired"},
		{"delete a bucket", func() error {
			js, _ := jetstream.New(nc)
			return js.DeleteKeyValue(short(), DesiredBucket)
		}, "$JS.API.STREAM.DELETE.KV_flotilla-desired"},
		{"purge a bucket", func() error {
			_, err := nc.Request("$JS.API.STREAM.PURGE.KV_"+StatusBucket, nil, time.Second)
			return err
		}, "$JS.API.STREAM.PURGE.KV_flotilla-status"},
		{"create a stream", func() error {
			js, _ := jetstream.New(nc)
			_, err := js.CreateStream(short(), jetstream.StreamConfig{Name: "EXFIL", Subjects: []string{"flotilla.>"}})
			return err
		}, "$JS.API.STREAM.CREATE.EXFIL"},
	} {
		t.Run("denied: "+tc.name, func(t *testing.T) {
			if err := tc.attack(); err == nil {
				t.Errorf("the attack succeeded")
			}
			v.waitFor(t, tc.subject)
		})
	}

	t.Run("nothing of the attacks landed", func(t *testing.T) {
		if st, err := hub.GetStatus(ctx, "staging-1", "api"); err != nil || st.GetMessage() != "staging's" {
			t.Errorf("staging-1's status = %v, %v", st, err)
		}
		if _, err := hub.clusters.Get(ctx, "staging-1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("staging-1's registration = %v", err)
		}
		if e, err := hub.GetDesired(ctx, "prod-eu", "api"); err != nil || historyID(t, e) != 1 {
			t.Errorf("prod-eu's desired state = %v", err)
		}
		if events, err := hub.Events(ctx, "*", "*", 100); err != nil || len(events) != 1 {
			t.Errorf("events = %v, %v; want only prod-eu's own", events, err)
		}
		if _, err := Provision(ctx, s.connect(), DefaultOptions()); err != nil {
			t.Errorf("the buckets are not intact: %v", err)
		}
	})
}

// TestAnonymousAndForeignClientsAreRefused: without credentials the
// operator signed, no client connects.
func TestAnonymousAndForeignClientsAreRefused(t *testing.T) {
	s := startServer(t)
	if nc, err := nats.Connect(s.url()); err == nil {
		nc.Close()
		t.Error("an anonymous client connected")
	}
	other, err := natsauth.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds, _, err := other.User("hub", natsauth.HubPermissions())
	if err != nil {
		t.Fatal(err)
	}
	user, err := natsauth.Credentials(creds)
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(s.url(), user); err == nil {
		nc.Close()
		t.Error("a user of another operator connected")
	}
}

// TestRevokedClusterIsCutOff: a revocation closes the cluster's open
// connection and refuses its credentials from then on, across a restart.
func TestRevokedClusterIsCutOff(t *testing.T) {
	s := startServer(t)
	s.provision(nil)
	creds, pub, err := s.auth.User("prod-eu", natsauth.ClusterPermissions("prod-eu"))
	if err != nil {
		t.Fatal(err)
	}
	user, err := natsauth.Credentials(creds)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(s.url(), user, nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := s.auth.Revoke(pub); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked cluster's connection is still open")
	}
	if nc, err := nats.Connect(s.url(), user); err == nil {
		nc.Close()
		t.Error("revoked credentials connected")
	}
	// The revocation is part of the account the authority writes, so a
	// restarted hub keeps it.
	s.stop()
	if s.auth, err = natsauth.LoadOrCreate(s.dir + "/trust"); err != nil {
		t.Fatal(err)
	}
	s.start()
	if nc, err := nats.Connect(s.url(), user); err == nil {
		nc.Close()
		t.Error("revoked credentials connected after a restart")
	}
	if !bytes.Contains(creds, []byte("NATS USER JWT")) {
		t.Error("credentials are not a NATS credentials file")
	}
}
