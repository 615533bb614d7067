// Package publish turns discovered applications into signed desired state:
// one artifact per application source (stored once, by digest), one
// DesiredState per (cluster, app), published only when what an agent would
// do changes, with a history id that only grows. Applications that left Git
// are published as deletions; broken ones keep their last good state.
// Nothing read back from the bus is trusted until it verifies with the
// hub's key set (LoadKeys), which lets the signing key be rotated.
package publish
