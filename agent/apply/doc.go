// Package apply is the agent's resource manager: it applies a set of objects
// with server-side apply as field manager "flotilla" (Git wins: it forces
// ownership of the fields Git sets), after a server-side dry-run of every
// object, CRDs and Namespaces first, with bounded concurrency; it deletes
// what left Git; and it returns a change set saying what happened to each
// object.
package apply
