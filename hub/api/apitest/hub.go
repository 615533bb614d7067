package apitest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Hub is an in-memory api.Hub. A test sets the fleet in its exported fields
// before it serves the Hub; the operations answer from that fleet the way
// the real hub does (an application published nowhere is api.ErrNotFound,
// every target cluster answers) and change nothing in it.
type Hub struct {
	// Registrations are the clusters, each with an identity whose labels
	// are the registration's.
	Registrations []*flotillav1.ClusterRegistration
	// Revoked are the revoked clusters, by name.
	Revoked        map[string]time.Time
	Desired        []*flotillav1.DesiredState
	Status         []*flotillav1.AppStatus
	EventLog       []*flotillav1.Event
	HistoryEntries []*flotillav1.HistoryEntry
	// Diffs are the objects each cluster's agent finds differing, by
	// "cluster/app".
	Diffs map[string][]*flotillav1.ObjectDiff
	// AgentErrors is the error each cluster's agent answers commands
	// with (diff, sync, rollout), by cluster.
	AgentErrors map[string]string
	// FleetRolloutsByName are the fleet rollouts by ApplicationSet or
	// Application name.
	FleetRolloutsByName map[string]*flotillav1.FleetRollout
	// Reverted is what a revert pushes; nil: there is nothing to revert.
	Reverted *flotillav1.RevertAppResponse
	// Errors are what a method fails with, by method name ("Statuses",
	// "Sync"), before it reads the fleet.
	Errors map[string]error

	mu     sync.Mutex
	calls  []Call
	audits []*flotillav1.Event
	// followers are the FollowEvents callbacks of the streams that follow.
	followers []func(*flotillav1.Event)
}

var _ api.Hub = (*Hub)(nil)

// Call is one operation the API asked of the hub, with its arguments.
type Call struct {
	Method    string
	App       string
	Cluster   string
	Actor     string
	HistoryID uint64
	Action    flotillav1.RolloutAction
	Full      bool
	Limit     int
	// Wave and Rollback are a fleet promote's wave and a fleet abort's
	// rollback.
	Wave     *int32
	Rollback bool
}

// Calls are the operations asked so far (History, Events, Diff, Sync,
// Rollback, Revert, Unpin, Rollout), oldest first.
func (h *Hub) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// Audits are the events the API audited, oldest first.
func (h *Hub) Audits() []*flotillav1.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.audits)
}

// record notes a call and returns the error the test set for it.
func (h *Hub) record(c Call) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.Method != "" {
		h.calls = append(h.calls, c)
	}
	return h.Errors[c.Method]
}

// Clusters implements api.Hub.
func (h *Hub) Clusters() []api.Cluster {
	out := make([]api.Cluster, 0, len(h.Registrations))
	for _, r := range clone(h.Registrations) {
		out = append(out, api.Cluster{Name: r.GetName(), Labels: r.GetLabels(), Registration: r, RevokedAt: h.Revoked[r.GetName()]})
	}
	return out
}

// AddCluster implements api.Hub: it answers with a bundle whose NATS
// credentials name the cluster, and changes nothing.
func (h *Hub) AddCluster(_ context.Context, name string, _ map[string]string) (*flotillav1.ClusterCredentials, error) {
	if err := h.record(Call{Method: "AddCluster", Cluster: name}); err != nil {
		return nil, err
	}
	return &flotillav1.ClusterCredentials{Cluster: name, NatsUrl: "tls://nats.example.com:4222", NatsCreds: []byte("creds of " + name)}, nil
}

// LabelCluster implements api.Hub, for a cluster in Registrations; it
// changes nothing.
func (h *Hub) LabelCluster(_ context.Context, name string, _ map[string]string) error {
	if err := h.record(Call{Method: "LabelCluster", Cluster: name}); err != nil {
		return err
	}
	if !slices.ContainsFunc(h.Registrations, func(r *flotillav1.ClusterRegistration) bool { return r.GetName() == name }) {
		return fmt.Errorf("%w: cluster %s", api.ErrNotFound, name)
	}
	return nil
}

// RevokeCluster implements api.Hub, for a cluster in Registrations.
func (h *Hub) RevokeCluster(_ context.Context, name string) (time.Time, error) {
	if err := h.record(Call{Method: "RevokeCluster", Cluster: name}); err != nil {
		return time.Time{}, err
	}
	if !slices.ContainsFunc(h.Registrations, func(r *flotillav1.ClusterRegistration) bool { return r.GetName() == name }) {
		return time.Time{}, fmt.Errorf("%w: cluster %s", api.ErrNotFound, name)
	}
	return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), nil
}

// Published implements api.Hub.
func (h *Hub) Published() []*flotillav1.DesiredState { return clone(h.Desired) }

// Statuses implements api.Hub.
func (h *Hub) Statuses(context.Context) (map[string]*flotillav1.AppStatus, error) {
	if err := h.Errors["Statuses"]; err != nil {
		return nil, err
	}
	out := map[string]*flotillav1.AppStatus{}
	for _, st := range clone(h.Status) {
		out[appkey.Join(st.GetCluster(), st.GetApp())] = st
	}
	return out, nil
}

// Events implements api.Hub: "*" matches any cluster or app, and the
// newest limit events are returned, oldest first.
func (h *Hub) Events(_ context.Context, cluster, app string, limit int) ([]*flotillav1.Event, error) {
	if err := h.record(Call{Method: "Events", Cluster: cluster, App: app, Limit: limit}); err != nil {
		return nil, err
	}
	var out []*flotillav1.Event
	for _, ev := range clone(h.EventLog) {
		if (cluster == "*" || ev.GetCluster() == cluster) && (app == "*" || ev.GetApp() == app) {
			out = append(out, ev)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// FollowEvents implements api.Hub: fn gets each event Append appends
// until ctx ends.
func (h *Hub) FollowEvents(ctx context.Context, fn func(*flotillav1.Event)) error {
	if err := h.record(Call{Method: "FollowEvents"}); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var ended bool
	h.followers = append(h.followers, func(ev *flotillav1.Event) {
		if !ended && ctx.Err() == nil {
			fn(ev)
		}
	})
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		ended = true
	})
	return nil
}

// Append appends ev to the event stream: the streams that follow it get
// it (EventLog, which ListEvents reads, stays as the test set it).
func (h *Hub) Append(ev *flotillav1.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, fn := range h.followers {
		fn(proto.CloneOf(ev))
	}
}

// Audit implements api.Hub.
func (h *Hub) Audit(_ context.Context, ev *flotillav1.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.audits = append(h.audits, proto.Clone(ev).(*flotillav1.Event))
}

// targets are the published, not deleted, desired states of app (in
// cluster, unless empty), sorted by cluster.
func (h *Hub) targets(app, cluster string) ([]*flotillav1.DesiredState, error) {
	return api.Targets(clone(h.Desired), app, cluster)
}

// History implements api.Hub.
func (h *Hub) History(_ context.Context, app, cluster string) ([]*flotillav1.HistoryEntry, error) {
	if err := h.record(Call{Method: "History", App: app, Cluster: cluster}); err != nil {
		return nil, err
	}
	var out []*flotillav1.HistoryEntry
	for _, e := range clone(h.HistoryEntries) {
		if e.GetApp() == app && (cluster == "" || e.GetCluster() == cluster) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		_, err := h.targets(app, cluster)
		return nil, err
	}
	return out, nil
}

// Diff implements api.Hub.
func (h *Hub) Diff(_ context.Context, app, cluster, actor string) ([]*flotillav1.ClusterDiff, error) {
	if err := h.record(Call{Method: "Diff", App: app, Cluster: cluster, Actor: actor}); err != nil {
		return nil, err
	}
	targets, err := h.targets(app, cluster)
	if err != nil {
		return nil, err
	}
	var out []*flotillav1.ClusterDiff
	for _, ds := range targets {
		c := ds.GetCluster()
		d := &flotillav1.ClusterDiff{Cluster: c, HistoryId: ds.GetHistoryId(), Error: h.AgentErrors[c]}
		if d.Error == "" {
			d.Diffs = clone(h.Diffs[c+"/"+app])
		}
		out = append(out, d)
	}
	return out, nil
}

// Sync implements api.Hub: each target cluster answers with the history
// id it applied, its current one.
func (h *Hub) Sync(_ context.Context, app, cluster, actor string) ([]*flotillav1.ClusterResult, error) {
	if err := h.record(Call{Method: "Sync", App: app, Cluster: cluster, Actor: actor}); err != nil {
		return nil, err
	}
	return h.results(app, cluster, func(ds *flotillav1.DesiredState) *flotillav1.ClusterResult {
		return &flotillav1.ClusterResult{HistoryId: ds.GetHistoryId(), Error: h.AgentErrors[ds.GetCluster()]}
	})
}

// Rollback implements api.Hub: every target cluster must have the history
// entry, and each answers with the next history id, the republished one.
func (h *Hub) Rollback(_ context.Context, app string, historyID uint64, cluster, actor string) ([]*flotillav1.ClusterResult, error) {
	if err := h.record(Call{Method: "Rollback", App: app, Cluster: cluster, Actor: actor, HistoryID: historyID}); err != nil {
		return nil, err
	}
	targets, err := h.targets(app, cluster)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, ds := range targets {
		if !slices.ContainsFunc(h.HistoryEntries, func(e *flotillav1.HistoryEntry) bool {
			return e.GetCluster() == ds.GetCluster() && e.GetApp() == app && e.GetHistoryId() == historyID
		}) {
			missing = append(missing, ds.GetCluster())
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: history id %d of %s is not retained in cluster(s) %s", api.ErrNotFound, historyID, app, strings.Join(missing, ", "))
	}
	return h.results(app, cluster, func(ds *flotillav1.DesiredState) *flotillav1.ClusterResult {
		return &flotillav1.ClusterResult{HistoryId: ds.GetHistoryId() + 1}
	})
}

// Revert implements api.Hub.
func (h *Hub) Revert(_ context.Context, app, actor string) (*flotillav1.RevertAppResponse, error) {
	if err := h.record(Call{Method: "Revert", App: app, Actor: actor}); err != nil {
		return nil, err
	}
	if _, err := h.targets(app, ""); err != nil {
		return nil, err
	}
	if h.Reverted == nil {
		return nil, fmt.Errorf("%w: no commit changed %s", api.ErrFailedPrecondition, app)
	}
	return proto.Clone(h.Reverted).(*flotillav1.RevertAppResponse), nil
}

// Unpin implements api.Hub: the pinned target clusters answer with the
// next history id, the one that follows Git again.
func (h *Hub) Unpin(_ context.Context, app, cluster, actor string) ([]*flotillav1.ClusterResult, error) {
	if err := h.record(Call{Method: "Unpin", App: app, Cluster: cluster, Actor: actor}); err != nil {
		return nil, err
	}
	results, err := h.results(app, cluster, func(ds *flotillav1.DesiredState) *flotillav1.ClusterResult {
		if ds.GetPin() == nil {
			return nil
		}
		return &flotillav1.ClusterResult{HistoryId: ds.GetHistoryId() + 1}
	})
	if err == nil && len(results) == 0 {
		err = fmt.Errorf("%w: %s is not pinned", api.ErrFailedPrecondition, app)
	}
	return results, err
}

// Rollout implements api.Hub: each target cluster acts on one Rollout
// named for the application in its destination namespace.
func (h *Hub) Rollout(_ context.Context, app, cluster string, action flotillav1.RolloutAction, full bool, actor string) ([]*flotillav1.ClusterResult, error) {
	if err := h.record(Call{Method: "Rollout", App: app, Cluster: cluster, Actor: actor, Action: action, Full: full}); err != nil {
		return nil, err
	}
	return h.results(app, cluster, func(ds *flotillav1.DesiredState) *flotillav1.ClusterResult {
		r := &flotillav1.ClusterResult{HistoryId: ds.GetHistoryId(), Error: h.AgentErrors[ds.GetCluster()]}
		if r.Error == "" {
			r.Objects = []string{"Rollout/" + ds.GetDestination().GetNamespace() + "/" + app}
		}
		return r
	})
}

// results asks each target cluster, in order; a nil answer leaves the
// cluster out.
func (h *Hub) results(app, cluster string, answer func(*flotillav1.DesiredState) *flotillav1.ClusterResult) ([]*flotillav1.ClusterResult, error) {
	targets, err := h.targets(app, cluster)
	if err != nil {
		return nil, err
	}
	var out []*flotillav1.ClusterResult
	for _, ds := range targets {
		if r := answer(ds); r != nil {
			r.Cluster = ds.GetCluster()
			out = append(out, r)
		}
	}
	return out, nil
}

// clone deep-copies messages, so the API may sort or change what it gets
// without touching the fleet a test set.
func clone[M proto.Message](in []M) []M {
	out := make([]M, len(in))
	for i, m := range in {
		out[i] = proto.Clone(m).(M)
	}
	return out
}

// FleetRollout implements api.Hub.
func (h *Hub) FleetRollout(name string) (*flotillav1.FleetRollout, error) {
	if err := h.record(Call{Method: "FleetRollout", App: name}); err != nil {
		return nil, err
	}
	return h.fleetRollout(name)
}

// FleetRollouts implements api.Hub: the FleetRolloutsByName map's, sorted by
// key.
func (h *Hub) FleetRollouts() []*flotillav1.FleetRollout {
	out := make([]*flotillav1.FleetRollout, 0, len(h.FleetRolloutsByName))
	for _, name := range slices.Sorted(maps.Keys(h.FleetRolloutsByName)) {
		out = append(out, proto.CloneOf(h.FleetRolloutsByName[name]))
	}
	return out
}

func (h *Hub) fleetRollout(name string) (*flotillav1.FleetRollout, error) {
	r, ok := h.FleetRolloutsByName[name]
	if !ok {
		return nil, fmt.Errorf("fleet rollout %s: %w", name, api.ErrNotFound)
	}
	return proto.Clone(r).(*flotillav1.FleetRollout), nil
}

// PromoteFleetRollout implements api.Hub: it answers with the rollout as
// it is.
func (h *Hub) PromoteFleetRollout(_ context.Context, name string, wave *int32, actor string) (*flotillav1.FleetRollout, error) {
	if err := h.record(Call{Method: "PromoteFleetRollout", App: name, Actor: actor, Wave: wave}); err != nil {
		return nil, err
	}
	return h.fleetRollout(name)
}

// AbortFleetRollout implements api.Hub: it answers with the rollout as it
// is.
func (h *Hub) AbortFleetRollout(_ context.Context, name string, rollback bool, actor string) (*flotillav1.FleetRollout, error) {
	if err := h.record(Call{Method: "AbortFleetRollout", App: name, Actor: actor, Rollback: rollback}); err != nil {
		return nil, err
	}
	return h.fleetRollout(name)
}
