// Package gitwatch keeps a local mirror of each Git repository the hub
// watches, with go-git: a cheap remote-ref listing decides whether to fetch,
// revisions (HEAD, branches, tags, commit SHAs) resolve to commits, and a
// commit's tree is written out for rendering. Force-pushes are followed.
package gitwatch
