// Package gitrepo is the hub's side of each Git repository, with go-git: a
// local mirror (a cheap remote-ref listing decides whether to fetch,
// revisions — HEAD, branches, tags, commit SHAs — resolve to commits, a
// commit's tree is written out for rendering, force-pushes are followed),
// and the reverts an operator's `rollback --git` pushes.
package gitrepo
