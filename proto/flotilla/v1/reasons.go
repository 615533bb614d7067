package flotillav1

// Reasons of the events the agent and the hub write (Event.reason). They
// are part of the wire: readers such as the hub's history match on them,
// so a reason is never renamed, only added.
const (
	// Written by the agent about an application.

	// ReasonSyncSucceeded: a desired state was applied.
	ReasonSyncSucceeded = "SyncSucceeded"
	// ReasonSyncFailed: a desired state could not be applied.
	ReasonSyncFailed = "SyncFailed"
	// ReasonHealthChanged: the applied objects' health changed.
	ReasonHealthChanged = "HealthChanged"
	// ReasonDriftDetected: live objects differ from the desired state and
	// were left as they are (self-heal is off or failed).
	ReasonDriftDetected = "DriftDetected"
	// ReasonDriftCorrected: self-heal re-applied drifted objects.
	ReasonDriftCorrected = "DriftCorrected"
	// ReasonDriftResolved: a drift reported before is gone.
	ReasonDriftResolved = "DriftResolved"
	// ReasonSelfHealFailed: re-applying drifted objects failed.
	ReasonSelfHealFailed = "SelfHealFailed"
	// ReasonRolloutProgressed: a Rollout moved on.
	ReasonRolloutProgressed = "RolloutProgressed"
	// ReasonRolloutDegraded: a Rollout's phase became Degraded.
	ReasonRolloutDegraded = "RolloutDegraded"
	// ReasonInternalError: the agent recovered from an internal error
	// (a panic) while working on the application.
	ReasonInternalError = "InternalError"
	// ReasonDesiredStateRefused: a desired state failed verification.
	ReasonDesiredStateRefused = "DesiredStateRefused"
	// ReasonReplayed: a desired state older than one the agent applied (or
	// not newer than the application's deletion) was refused.
	ReasonReplayed = "Replayed"
	// ReasonEventsDropped: the agent kept fewer events than NATS missed
	// while it was unreachable; the message says how many went.
	ReasonEventsDropped = "EventsDropped"
	// ReasonWaveAnalysisProgressed: the analysis a fleet rollout's wave
	// asked for started or took a measurement (AppStatus.wave_analysis).
	ReasonWaveAnalysisProgressed = "WaveAnalysisProgressed"
	// ReasonWaveAnalysisSucceeded: the wave's analysis ended Successful.
	ReasonWaveAnalysisSucceeded = "WaveAnalysisSucceeded"
	// ReasonWaveAnalysisFailed: the wave's analysis ended Failed, Error or
	// Inconclusive; the message has the measurements.
	ReasonWaveAnalysisFailed = "WaveAnalysisFailed"

	// Written by the hub.

	// ReasonPublished: a new desired state was published.
	ReasonPublished = "Published"
	// ReasonDeleted: an application left Git and its deletion was
	// published.
	ReasonDeleted = "Deleted"
	// ReasonRolledBack: an operator republished a history entry.
	ReasonRolledBack = "RolledBack"
	// ReasonReverted: an operator had the hub push a revert to Git.
	ReasonReverted = "Reverted"
	// ReasonGitFetchFailed: polling or fetching a repository failed.
	ReasonGitFetchFailed = "GitFetchFailed"
	// ReasonDiscoveryFailed: a root could not be discovered.
	ReasonDiscoveryFailed = "DiscoveryFailed"
	// ReasonAppInvalid: an application failed discovery or rendering.
	ReasonAppInvalid = "AppInvalid"
	// ReasonFieldsIgnored: an application has fields Flotilla does not act
	// on.
	ReasonFieldsIgnored = "FieldsIgnored"
	// ReasonRecovered: a failure the hub reported before cleared.
	ReasonRecovered = "Recovered"
	// ReasonAudit: an operator's call through the hub's API that changes
	// something.
	ReasonAudit = "Audit"
	// ReasonFleetWaveProgressed: a fleet rollout's wave was released,
	// passed its gate, or waits for an operator.
	ReasonFleetWaveProgressed = "FleetWaveProgressed"
	// ReasonFleetWaveFailed: a fleet rollout's wave failed its gate; the
	// rollout is halted.
	ReasonFleetWaveFailed = "FleetWaveFailed"
	// ReasonFleetRolledBack: a fleet rollout gave a cluster its previous
	// desired state back.
	ReasonFleetRolledBack = "FleetRolledBack"
)
