package publish

import (
	"context"

	"github.com/flotilla-dev/flotilla/hub/discovery"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Change is a key whose desired state in Git differs from what is
// published for it.
type Change struct {
	// Key is the (cluster, app) key (appkey.Join).
	Key string
	// Content is the hex fingerprint of Git's desired state for the key.
	Content string
	// Previous is the history id published for the key before (0: none).
	Previous uint64
	// App is the application the change belongs to.
	App *discovery.App
}

// Releaser decides which changes are published now: Release returns the
// released keys, each with the fleet wave its desired state is published
// in (nil: none). Keys it leaves out are held at their last state.
type Releaser interface {
	Release(ctx context.Context, changes []Change) map[string]*flotillav1.FleetWave
}

// releaseAll releases every change, in no wave.
func releaseAll(changes []Change) map[string]*flotillav1.FleetWave {
	out := make(map[string]*flotillav1.FleetWave, len(changes))
	for _, c := range changes {
		out[c.Key] = nil
	}
	return out
}
