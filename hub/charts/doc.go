// Package charts reads Helm charts for the hub from Helm repositories and OCI
// registries, as Argo CD's repo-server does: a version or semver range
// resolved against the repository's index (or the registry's tags), the
// archive verified and cached, a chart's missing dependencies vendored as
// `helm dependency build` would. Indexes are cached for a refresh interval
// and asked again with conditional requests.
package charts
