// Package appspec reads Argo CD Application and ApplicationSet manifests as
// Argo CD defines them, validates them with errors naming the file, object
// and field, expands ApplicationSet generators, and converts an Application
// into the wire protocol's desired-state fields.
package appspec
