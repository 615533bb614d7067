// Package reconcile is the agent's sync loop: for each application of its
// cluster it takes the newest verified desired state, fetches and unpacks
// its artifact, renders it, applies it through the apply engine (nothing if
// any object fails the server's dry-run), prunes what left Git, follows
// health and drift, runs the analysis its fleet wave asks for, and
// reports status and events. It depends on small interfaces of its own
// (Cluster, Inventories, Artifacts, Reporter, WaveAnalyses), never on
// NATS or a concrete engine.
package reconcile
