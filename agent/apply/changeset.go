package apply

// Action is what a sync did to one object.
type Action string

// The actions of a change set.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	// Pruned is an object the agent deleted: it left Git, its application
	// was removed, or it was a finished hook.
	Pruned Action = "pruned"
	// PruneSkipped is an object that left Git but was kept: prune is off,
	// or it carries Prune=false.
	PruneSkipped Action = "prune-skipped"
	// Released is an object that left its application's Git (or whose
	// application was removed) and was not deleted because another
	// application owns it now, or now wants it: it is left to that one.
	Released Action = "released"
	Failed   Action = "failed"
)

// Change is what happened to one object.
type Change struct {
	Ref     ObjectRef
	Action  Action
	Message string
}

// ChangeSet lists the changes of a sync in the order of the objects given.
type ChangeSet struct {
	Changes []Change
}

// Append adds changes.
func (c *ChangeSet) Append(changes ...Change) { c.Changes = append(c.Changes, changes...) }

// Writes counts the changes that wrote to the API server.
func (c *ChangeSet) Writes() int {
	n := 0
	for _, ch := range c.Changes {
		if ch.Action == Created || ch.Action == Configured || ch.Action == Pruned {
			n++
		}
	}
	return n
}
