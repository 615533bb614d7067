package api

// NewHandlerAt is NewHandler with the server on a clock the test moves and
// WatchFleet's interval.
var NewHandlerAt = newHandler

// NewAuthAt is NewAuth with the sessions and the rate limiter on a clock
// the test moves.
var NewAuthAt = newAuth

// FailedAuthBurst is how many refused requests a remote IP may make at once.
const FailedAuthBurst = failedAuthBurst

// Bounds of the WatchFleet streams.
const (
	MaxPendingEvents = maxPendingEvents
	MaxWatchStreams  = maxWatchStreams
)
