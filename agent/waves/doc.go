// Package waves orders an application's objects the way Argo CD syncs
// them: phases (PreSync, Sync, PostSync, with SyncFail on failure), and
// within each phase waves from argocd.argoproj.io/sync-wave, negative
// first. It reads Argo CD's hook annotations and maps Helm's hook
// annotations onto them as Argo CD does. It is pure: the syncer carries
// the plan out.
package waves
