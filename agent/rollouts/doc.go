// Package rollouts is the agent's progressive-delivery engine for Argo
// Rollouts' Rollout, AnalysisTemplate and AnalysisRun objects. This file
// set holds the CRD definitions the agent installs when a cluster has none,
// so Rollout manifests apply unchanged.
package rollouts
