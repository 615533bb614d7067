package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func command(t *testing.T, cluster, app string) *flotillav1.SignedAgentCommand {
	t.Helper()
	data, err := proto.Marshal(&flotillav1.AgentCommand{SchemaVersion: 1, Cluster: cluster, App: app,
		Command: &flotillav1.AgentCommand_Sync{Sync: &flotillav1.SyncCommand{}}})
	if err != nil {
		t.Fatal(err)
	}
	return &flotillav1.SignedAgentCommand{SchemaVersion: 1, Command: data}
}

// serve answers cluster's commands with the history id 7 and the app the
// command names, until ctx ends.
func serve(ctx context.Context, t *testing.T, b *Bus, cluster string) {
	t.Helper()
	err := b.ServeCommands(ctx, cluster, func(_ context.Context, env *flotillav1.SignedAgentCommand) *flotillav1.AgentReply {
		cmd := &flotillav1.AgentCommand{}
		if err := proto.Unmarshal(env.GetCommand(), cmd); err != nil {
			return &flotillav1.AgentReply{SchemaVersion: 1, Error: err.Error()}
		}
		return &flotillav1.AgentReply{SchemaVersion: 1, HistoryId: 7, Objects: []string{cluster + "/" + cmd.GetApp()}}
	})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, b)
}

// flush waits until the server has b's subscriptions.
func flush(t *testing.T, b *Bus) {
	t.Helper()
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestCommandIsAnsweredByTheClustersAgent(t *testing.T) {
	s := startServer(t)
	hub, agent := s.provision(nil), s.provision(nil)
	serve(t.Context(), t, agent, "prod-eu")
	serve(t.Context(), t, agent, "staging-1")

	for _, cluster := range []string{"prod-eu", "staging-1"} {
		reply, err := hub.Command(t.Context(), cluster, command(t, cluster, "api-service"))
		if err != nil {
			t.Fatal(err)
		}
		want := &flotillav1.AgentReply{SchemaVersion: 1, HistoryId: 7, Objects: []string{cluster + "/api-service"}}
		if diff := cmp.Diff(want, reply, protocmp.Transform()); diff != "" {
			t.Errorf("%s: reply (-want +got):\n%s", cluster, diff)
		}
	}
}

func TestCommandToAClusterWithoutAgent(t *testing.T) {
	s := startServer(t)
	hub, agent := s.provision(nil), s.provision(nil)
	if _, err := hub.Command(t.Context(), "prod-eu", command(t, "prod-eu", "api-service")); !errors.Is(err, ErrAgentOffline) {
		t.Errorf("Command with no agent = %v, want ErrAgentOffline", err)
	}

	// An agent that stopped serving is offline again.
	ctx, stop := context.WithCancel(t.Context())
	serve(ctx, t, agent, "prod-eu")
	if _, err := hub.Command(t.Context(), "prod-eu", command(t, "prod-eu", "api-service")); err != nil {
		t.Fatalf("Command while served: %v", err)
	}
	stop()
	eventually(t, watchTimeout, func() error {
		// A request that reached the subscription just before it ended is
		// never answered: each try has a deadline of its own.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := hub.Command(ctx, "prod-eu", command(t, "prod-eu", "api-service")); !errors.Is(err, ErrAgentOffline) {
			return fmt.Errorf("Command after the agent stopped = %v, want ErrAgentOffline", err)
		}
		return nil
	})
}

func TestCommandThatDoesNotDecodeGetsAnErrorReply(t *testing.T) {
	s := startServer(t)
	hub, agent := s.provision(nil), s.provision(nil)
	serve(t.Context(), t, agent, "prod-eu")
	msg, err := hub.nc.Request(commandSubject("prod-eu"), []byte{0xff}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := decodeReply(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if reply.GetSchemaVersion() != 1 || reply.GetError() == "" {
		t.Errorf("reply = %v, want an error reply", reply)
	}
}

func TestCommandWaitsUntilCtxEnds(t *testing.T) {
	s := startServer(t)
	hub, agent := s.provision(nil), s.provision(nil)
	release := make(chan struct{})
	defer close(release)
	if err := agent.ServeCommands(t.Context(), "prod-eu", func(context.Context, *flotillav1.SignedAgentCommand) *flotillav1.AgentReply {
		<-release
		return &flotillav1.AgentReply{}
	}); err != nil {
		t.Fatal(err)
	}
	flush(t, agent)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := hub.Command(ctx, "prod-eu", command(t, "prod-eu", "api-service")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Command past its deadline = %v, want context.DeadlineExceeded", err)
	}
}
