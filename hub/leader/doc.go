// Package leader elects one hub replica at a time through a lease in
// NATS JetStream: a record whose every write names the revision it
// supersedes (compare-and-set) and which the server expires by itself
// when its holder stops renewing it. The leader's desired-state writes are
// fenced by the lease's revision (Elector.Fenced), so a replica that lost
// the lease cannot write, even one that does not know it yet.
package leader
