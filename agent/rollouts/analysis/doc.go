// Package analysis runs Argo Rollouts analysis: it resolves
// AnalysisTemplates and their args into an AnalysisRun's metrics, takes
// measurements from Prometheus or a web endpoint, judges them with the
// metric's successCondition/failureCondition (expr, as Argo Rollouts
// evaluates them) and assesses each metric and the run with Argo Rollouts'
// rules: failureLimit, inconclusiveLimit, consecutiveErrorLimit, count,
// interval, initialDelay and dryRun. A run's whole state lives in its
// status, so a restarted agent resumes it where it was.
package analysis
