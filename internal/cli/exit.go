package cli

import "errors"

// Exit codes of the CLI.
const (
	ExitOK       = 0
	ExitFailure  = 1 // anything else
	ExitUsage    = 2 // bad flags or arguments
	ExitAuth     = 3 // unauthenticated or not allowed
	ExitNotFound = 4 // unknown app, cluster or revision
	ExitHubDown  = 5 // the hub could not be reached
	ExitDiffers  = 6 // app diff found differences
)

// ExitError is an error with the exit code it should end the CLI with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode maps an error to the CLI's exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitFailure
}
