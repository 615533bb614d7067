// Package hub wires the hub together: NATS (embedded or external), the Git
// mirrors and their pollers, push webhooks, the cluster registry, and the
// reconcile loop that runs discovery and publishes desired state. The hub
// holds Git credentials and never any cluster credential.
package hub
