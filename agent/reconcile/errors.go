package reconcile

import "fmt"

// internalError is a panic recovered while working on one application.
type internalError struct {
	during string
	value  any
}

func (e *internalError) Error() string {
	return fmt.Sprintf("internal error while %s: %v (the agent recovered; this application keeps its last applied state and no other application is affected)", e.during, e.value)
}
