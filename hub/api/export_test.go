package api

// NewHandlerAt is NewHandler with RequireToken's rate limiter on a clock
// the test moves.
var NewHandlerAt = newHandler

// FailedAuthBurst is how many refused requests a remote IP may make at once.
const FailedAuthBurst = failedAuthBurst
