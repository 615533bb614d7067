package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// commandSubject is where the hub sends commands to cluster's agent.
func commandSubject(cluster string) string { return "flotilla.cmd." + cluster }

// Command sends a signed command to cluster's agent and waits for its
// reply until ctx ends. It returns ErrAgentOffline (wrapped) when no agent
// of the cluster is subscribed.
func (b *Bus) Command(ctx context.Context, cluster string, cmd *flotillav1.SignedAgentCommand) (*flotillav1.AgentReply, error) {
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	msg, err := b.nc.RequestWithContext(ctx, commandSubject(cluster), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("cluster %s: %w", cluster, ErrAgentOffline)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cluster, err)
	}
	reply, err := decodeReply(msg.Data)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cluster, err)
	}
	return reply, nil
}

// ServeCommands answers the commands sent to cluster with handle, each in
// its own goroutine (a diff need not wait for a sync), until ctx ends. A
// message that does not decode gets an error reply.
func (c *Conn) ServeCommands(ctx context.Context, cluster string, handle func(context.Context, *flotillav1.SignedAgentCommand) *flotillav1.AgentReply) error {
	msgs := make(chan *nats.Msg, 16)
	sub, err := c.nc.ChanSubscribe(commandSubject(cluster), msgs)
	if err != nil {
		return fmt.Errorf("subscribe to commands: %w", err)
	}
	go func() {
		defer sub.Unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case msg := <-msgs:
				go func() {
					var reply *flotillav1.AgentReply
					if cmd, err := decodeCommand(msg.Data); err != nil {
						reply = &flotillav1.AgentReply{SchemaVersion: 1, Error: err.Error()}
					} else {
						reply = handle(ctx, cmd)
					}
					if data, err := proto.Marshal(reply); err == nil {
						_ = msg.Respond(data)
					}
				}()
			}
		}
	}()
	return nil
}
