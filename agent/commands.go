package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/reconcile"
	"github.com/flotilla-dev/flotilla/agent/rollouts"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// commandMaxAge bounds replay: a signed command older than this (or this
// far in the future, for clock skew) is refused.
const commandMaxAge = time.Minute

// commandHandler verifies the hub's signed commands and carries them out.
func commandHandler(cluster string, verifier *signing.Verifier, syncer *reconcile.Syncer, client dynamic.Interface, log *slog.Logger) func(context.Context, *flotillav1.SignedAgentCommand) *flotillav1.AgentReply {
	return func(ctx context.Context, env *flotillav1.SignedAgentCommand) *flotillav1.AgentReply {
		reply := &flotillav1.AgentReply{SchemaVersion: 1}
		cmd, err := verifier.VerifyCommand(env)
		if err == nil {
			err = checkCommand(cmd, cluster, time.Now())
		}
		if err != nil {
			log.Warn("command refused", "error", err)
			reply.Error = "command refused: " + err.Error()
			return reply
		}
		log := log.With("app", cmd.GetApp(), "actor", cmd.GetActor())
		switch cmd.GetCommand().(type) {
		case *flotillav1.AgentCommand_Sync:
			log.Info("sync requested")
			reply.HistoryId, err = syncer.SyncNow(ctx, cmd.GetApp())
		case *flotillav1.AgentCommand_Diff:
			reply.HistoryId, reply.Diffs, err = syncer.Diff(ctx, cmd.GetApp())
		case *flotillav1.AgentCommand_Rollout:
			rc := cmd.GetRollout()
			log.Info("rollout action", "action", rc.GetAction().String(), "full", rc.GetFull())
			var ros []*unstructured.Unstructured
			if ros, err = syncer.Rollouts(ctx, cmd.GetApp()); err == nil {
				for _, ro := range ros {
					if err = rollouts.Act(ctx, client, ro, rc.GetAction(), rc.GetFull()); err != nil {
						break
					}
					reply.Objects = append(reply.Objects, "Rollout/"+ro.GetNamespace()+"/"+ro.GetName())
				}
			}
		default:
			err = fmt.Errorf("unknown command (agent %s is older than the hub?)", Version)
		}
		if err != nil {
			reply.Error = err.Error()
		}
		return reply
	}
}

// checkCommand refuses a command for another cluster or outside its time.
func checkCommand(cmd *flotillav1.AgentCommand, cluster string, now time.Time) error {
	if cmd.GetCluster() != cluster {
		return fmt.Errorf("addressed to cluster %q, this is %q", cmd.GetCluster(), cluster)
	}
	issued := cmd.GetIssuedAt().AsTime()
	if age := now.Sub(issued); age > commandMaxAge || age < -commandMaxAge {
		return fmt.Errorf("issued at %s, more than %s from now: replayed or a clock is off", issued.Format(time.RFC3339), commandMaxAge)
	}
	return nil
}
