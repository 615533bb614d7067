// Package agent wires the agent of one cluster together: it dials out to
// NATS, registers its cluster with a heartbeat, watches only its own
// cluster's desired state, verifies each against the pinned hub key and
// hands it to the sync loop, which applies it to the cluster.
package agent
