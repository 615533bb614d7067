package testenv

import "context"

// TB is what testenv needs of its caller. testing.TB has it; so does the
// demo (test/demo), which runs the same clusters, Prometheus and traffic
// outside a test, failing like a test does: Fatal stops the caller, and the
// cleanups stop what was started.
type TB interface {
	Helper()
	Cleanup(func())
	Context() context.Context
	TempDir() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
}
