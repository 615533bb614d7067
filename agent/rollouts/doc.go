// Package rollouts is the agent's Argo Rollouts controller. It runs the
// Rollouts of its cluster, canary (steps, background analysis, Gateway API
// weights) and blue-green (preview, pre- and post-promotion analysis), with
// Argo Rollouts' own objects and field names: the ReplicaSets of each pod
// template, the Services' selectors, the Rollout's status and AnalysisRuns
// whose status holds every measurement, so a restarted agent resumes a
// rollout where it was. It also installs the argoproj.io CRDs a cluster
// lacks, carries out operators' actions (promote, abort, retry, pause) as
// Argo's kubectl plugin does, summarises a Rollout for the application's
// status, and runs the AnalysisRuns that gate fleet rollouts' waves
// (WaveAnalyses). Analysis itself is package analysis.
package rollouts
