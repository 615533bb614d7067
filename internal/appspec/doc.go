// Package appspec reads Argo CD Application and ApplicationSet manifests as
// Argo CD defines them, validates them with errors naming the file, object
// and field, expands ApplicationSet generators, and converts an Application
// into the wire protocol's desired-state fields. It also reads how a change
// rolls out across the fleet: RollingSync steps and flotilla.dev/waves gates.
package appspec
