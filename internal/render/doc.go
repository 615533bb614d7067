// Package render turns an application's source into Kubernetes objects the
// way Argo CD does, in process and without external binaries: Helm charts
// (template-only, value files in order, inline values, --set parameters),
// Kustomize, and directories of YAML or JSON. The hub renders to discover
// Applications and to find the files an artifact needs; the agent renders to
// apply.
package render
