// Package fleet releases a change to the fleet in waves of clusters.
//
// An ApplicationSet with Argo CD's RollingSync strategy, or an
// ApplicationSet or Application with the flotilla.dev/waves annotation,
// has a Plan: its (cluster, app) keys in waves, each with a gate (bake
// time, an analysis its clusters run, a success policy, approval). When
// Git changes what such a group deploys, the Controller starts a rollout:
// as the publisher's Releaser it lets the changes of the current wave out
// and holds the rest; Progress moves the rollout on as the wave's clusters
// report the new revision Synced and Healthy and its gate passes, and
// halts it (rolling the updated clusters back, when asked) when the gate
// fails. A rollout's progress is a signed record in NATS, so a hub that
// takes over continues it from the same wave.
package fleet
