package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

// minNonceSize is the shortest nonce a command may carry (the hub draws 16
// bytes).
const minNonceSize = 16

// commandHandler verifies the hub's signed commands and carries them out,
// each at most once.
func commandHandler(cluster string, verifier *signing.Verifier, syncer *reconcile.Syncer, client dynamic.Interface, log *slog.Logger) func(context.Context, *flotillav1.SignedAgentCommand) *flotillav1.AgentReply {
	return handleCommands(newCommandGuard(cluster, time.Now), verifier, syncer, client, log)
}

// handleCommands is commandHandler with the guard that admits commands.
func handleCommands(guard *commandGuard, verifier *signing.Verifier, syncer *reconcile.Syncer, client dynamic.Interface, log *slog.Logger) func(context.Context, *flotillav1.SignedAgentCommand) *flotillav1.AgentReply {
	return func(ctx context.Context, env *flotillav1.SignedAgentCommand) *flotillav1.AgentReply {
		reply := &flotillav1.AgentReply{SchemaVersion: 1}
		cmd, err := verifier.VerifyCommand(env)
		if err == nil {
			err = guard.admit(cmd)
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
			if ros, err = syncer.Rollouts(ctx, cmd.GetApp()); err == nil && len(ros) > 0 && client == nil {
				err = errors.New("this agent runs without a client for Rollouts")
			}
			if err == nil {
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

// commandGuard admits a verified command only once, and only for this
// cluster within its time: it remembers the nonce of every command it
// admitted until issued_at stops letting that command through anyway, so
// what it remembers is bounded by the commands of two minutes. A command
// issued before the guard was made is refused: an earlier process of the
// agent, whose nonces are gone, may have carried it out.
type commandGuard struct {
	cluster string
	now     func() time.Time
	started time.Time

	mu sync.Mutex
	// nonces are the nonces admitted, with when their command expires.
	nonces map[string]time.Time
}

func newCommandGuard(cluster string, now func() time.Time) *commandGuard {
	return &commandGuard{cluster: cluster, now: now, started: now(), nonces: map[string]time.Time{}}
}

// admit refuses a command for another cluster, outside its time, issued
// before the agent started, without a nonce, or with a nonce admitted
// before; otherwise it remembers the nonce. Only verified commands may be
// admitted: the nonce is the hub's.
func (g *commandGuard) admit(cmd *flotillav1.AgentCommand) error {
	now := g.now()
	if err := checkCommand(cmd, g.cluster, now); err != nil {
		return err
	}
	issued := cmd.GetIssuedAt().AsTime()
	if issued.Before(g.started) {
		return fmt.Errorf("issued at %s, before this agent started (%s): it may have been carried out already; send it again",
			issued.Format(time.RFC3339), g.started.Format(time.RFC3339))
	}
	switch nonce := cmd.GetNonce(); {
	case len(nonce) == 0:
		return errors.New("no nonce (is the hub older than this agent? upgrade the hub first): each command is carried out once, by its nonce")
	case len(nonce) < minNonceSize:
		return fmt.Errorf("nonce of %d bytes, want %d or more", len(nonce), minNonceSize)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for n, expires := range g.nonces {
		if now.After(expires) {
			delete(g.nonces, n)
		}
	}
	if _, seen := g.nonces[string(cmd.GetNonce())]; seen {
		return errors.New("nonce carried out before: replayed")
	}
	g.nonces[string(cmd.GetNonce())] = issued.Add(commandMaxAge)
	return nil
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
