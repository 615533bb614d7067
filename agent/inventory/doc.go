// Package inventory keeps, in the cluster itself, the set of objects each
// application owns, the desired state last applied and the highest history
// id accepted, so pruning, the free no-op and the refusal of replayed
// desired states survive agent restarts. One ConfigMap per application
// lives in the agent's namespace, and stays as a tombstone once the
// application is deleted.
package inventory
