// Package sync is the agent's sync loop: for each application of its
// cluster it verifies the newest desired state, fetches and unpacks its
// artifact, renders it, applies it (nothing if any object fails the
// server's dry-run), prunes what left Git, watches health and reports
// status and events. It sees "desired state changed" and "report status",
// never NATS subjects.
package sync
