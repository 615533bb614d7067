// Package inventory keeps, in the cluster itself, the set of objects each
// application owns and the desired state last applied, so pruning and the
// free no-op survive agent restarts. One ConfigMap per application lives in
// the agent's namespace.
package inventory
