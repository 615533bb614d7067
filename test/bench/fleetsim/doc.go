// Package fleetsim simulates a fleet of agents for the scale benchmarks:
// each simulated agent is the agent's own code (agent.Serve) from its NATS
// connection down to verification, sync and status reporting, with its
// own credentials, subscription, catch-up, heartbeat and outbox; only the
// Kubernetes side is a Recorder, which records what would be applied.
// cmd/fleetsim runs a fleet of them in a process of its own, so the hub's
// and NATS's resources are measured apart from the agents'.
package fleetsim
