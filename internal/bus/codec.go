package bus

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// The decoders of what the bus reads from NATS. Anyone who can write to a
// bucket or subject can put any bytes there: a decoder returns an error,
// never panics, and a caller skips or refuses what does not decode.
// decodeDesired (desired.go) also reads the entry's key and headers.

func decodeStatus(data []byte) (*flotillav1.AppStatus, error) {
	st := &flotillav1.AppStatus{}
	if err := proto.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("status does not decode: %w", err)
	}
	return st, nil
}

func decodeRegistration(data []byte) (*flotillav1.ClusterRegistration, error) {
	reg := &flotillav1.ClusterRegistration{}
	if err := proto.Unmarshal(data, reg); err != nil {
		return nil, fmt.Errorf("registration does not decode: %w", err)
	}
	return reg, nil
}

func decodeEvent(data []byte) (*flotillav1.Event, error) {
	ev := &flotillav1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("event does not decode: %w", err)
	}
	return ev, nil
}

func decodeCommand(data []byte) (*flotillav1.SignedAgentCommand, error) {
	cmd := &flotillav1.SignedAgentCommand{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("command does not decode: %w", err)
	}
	return cmd, nil
}

func decodeReply(data []byte) (*flotillav1.AgentReply, error) {
	reply := &flotillav1.AgentReply{}
	if err := proto.Unmarshal(data, reply); err != nil {
		return nil, fmt.Errorf("reply does not decode: %w", err)
	}
	return reply, nil
}
