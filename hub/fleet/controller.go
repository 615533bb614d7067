package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/hub/publish"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Store keeps the rollouts' signed records (*bus.Bus, fenced by the
// leader's lease in the hub).
type Store interface {
	// PutFleetRollout writes the record under id expecting revision (0:
	// absent) and returns the new revision.
	PutFleetRollout(ctx context.Context, id string, r *flotillav1.SignedFleetRollout, revision uint64) (uint64, error)
}

// Fleet is what the controller reads of the fleet and does to it.
type Fleet interface {
	Observe(key string) Observed
	// RollBack republishes (cluster, app)'s history entry to, pinned, for
	// reason.
	RollBack(ctx context.Context, cluster, app string, to uint64, reason string) (uint64, error)
	// Event records what happened to a rollout.
	Event(ctx context.Context, ev *flotillav1.Event)
}

// Errors of operators' calls.
var (
	ErrNotFound  = errors.New("no fleet rollout")
	ErrNotActive = errors.New("the fleet rollout is not in progress")
	// ErrNotCurrent is a promote naming a wave other than the current one.
	ErrNotCurrent = errors.New("not the current wave")
)

// Controller runs the fleet's rollouts: it is the publisher's Releaser,
// and Progress moves them on. Only the leading hub replica calls Release,
// Progress, Promote and Abort; every replica follows the records with
// Observe, so any replica serves Get.
type Controller struct {
	store Store
	keys  *signing.KeySet
	now   func() time.Time
	log   *slog.Logger

	mu sync.Mutex
	// plans are the groups' plans by key, from the last discovery.
	plans map[string]*Plan
	// rollouts are the latest record per group ("<kind>/<name>"), and
	// revisions their entries' revisions in the store.
	rollouts  map[string]*flotillav1.FleetRollout
	revisions map[string]uint64
}

// New creates a Controller writing records to store, signed with keys.
func New(store Store, keys *signing.KeySet, now func() time.Time, log *slog.Logger) *Controller {
	return &Controller{store: store, keys: keys, now: now, log: log, plans: map[string]*Plan{},
		rollouts: map[string]*flotillav1.FleetRollout{}, revisions: map[string]uint64{}}
}

// SetPlans replaces the plans with those of a discovery (Plans).
func (c *Controller) SetPlans(plans map[string]*Plan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.plans = plans
}

// Observe takes a record read from the store: the controller's own write,
// or another replica's. One that does not verify is ignored (and logged):
// only what the hub signed is acted on.
func (c *Controller) Observe(id string, signed *flotillav1.SignedFleetRollout, revision uint64) {
	r, err := c.keys.Verifier.VerifyFleetRollout(signed)
	if err == nil && r.GetKind()+"/"+r.GetName() != id {
		err = fmt.Errorf("record of %s/%s under key %s", r.GetKind(), r.GetName(), id)
	}
	if err != nil {
		c.log.Error("fleet rollout record refused", "key", id, "error", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if revision > c.revisions[id] {
		c.rollouts[id], c.revisions[id] = r, revision
	}
}

// Release implements publish.Releaser: changes of keys in no plan go at
// once; those of a plan's keys start or continue its rollout, and go
// when their wave does. A rollout whose record cannot be written releases
// nothing new: the next pass tries again.
func (c *Controller) Release(ctx context.Context, changes []publish.Change) map[string]*flotillav1.FleetWave {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	out := map[string]*flotillav1.FleetWave{}
	groups := map[string][]publish.Change{}
	plans := map[string]*Plan{}
	for _, ch := range changes {
		plan := c.plans[ch.Key]
		if plan == nil {
			out[ch.Key] = nil
			continue
		}
		groups[plan.ID()] = append(groups[plan.ID()], ch)
		plans[plan.ID()] = plan
	}
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		plan, group := plans[id], groups[id]
		prev := c.rollouts[id]
		r := proto.Clone(prev).(*flotillav1.FleetRollout)
		var superseded *flotillav1.FleetRollout
		if prev == nil || supersedes(prev, group) {
			r = start(plan, group, now)
			if prev != nil && active(prev) {
				superseded = prev
			}
		} else {
			adopt(r, plan, group)
		}
		released := release(r, now)
		if !proto.Equal(r, prev) {
			if err := c.put(ctx, r); err != nil {
				c.log.Error("fleet rollout: record its progress; holding its changes", "rollout", r.GetId(), "error", err)
				continue
			}
			if superseded != nil {
				c.log.Info("fleet rollout superseded", "rollout", superseded.GetId(), "by", r.GetId())
			}
		}
		for _, ch := range group {
			i, ok := released[ch.Key]
			if !ok {
				continue
			}
			out[ch.Key] = &flotillav1.FleetWave{Rollout: r.GetId(), Wave: i, Analysis: r.Waves[i].GetGate().GetAnalysis()}
		}
	}
	return out
}

// put signs and writes r as its group's record (c.mu held).
func (c *Controller) put(ctx context.Context, r *flotillav1.FleetRollout) error {
	id := r.GetKind() + "/" + r.GetName()
	signed, err := c.keys.Signer.SignFleetRollout(r)
	if err != nil {
		return err
	}
	rev, err := c.store.PutFleetRollout(ctx, id, signed, c.revisions[id])
	if err != nil {
		return err
	}
	c.rollouts[id], c.revisions[id] = r, rev
	return nil
}

// Progress moves every rollout in progress on with what fleet observes:
// a wave whose targets are all Synced and Healthy and whose gate passed
// ends, and the next is to be released; a failed gate halts the rollout
// and, with rollback, gives the clusters it updated their previous
// desired state back. It returns whether a publish is due (a wave, or
// more of one, to release) and when Progress should look again at the
// latest (a bake time ending), zero for no such time.
func (c *Controller) Progress(ctx context.Context, fleet Fleet) (publish bool, next time.Time) {
	c.mu.Lock()
	now := c.now()
	var events []*flotillav1.Event
	for _, id := range slices.Sorted(maps.Keys(c.rollouts)) {
		prev := c.rollouts[id]
		if !active(prev) {
			continue
		}
		r := proto.Clone(prev).(*flotillav1.FleetRollout)
		changed, due := progress(r, fleet.Observe, now)
		if !changed {
			publish = publish || due
			continue
		}
		if err := c.put(ctx, r); err != nil {
			c.log.Error("fleet rollout: record its progress", "rollout", r.GetId(), "error", err)
			continue
		}
		publish = publish || due
		events = append(events, transitions(prev, r)...)
	}
	next = c.nextLook(now)
	rollbacks := c.pendingRollbacks()
	c.mu.Unlock()
	for _, ev := range events {
		fleet.Event(ctx, ev)
	}
	for _, id := range rollbacks {
		c.rollBack(ctx, fleet, id)
	}
	return publish, next
}

// nextLook is when a bake time of a gated wave ends (c.mu held).
func (c *Controller) nextLook(now time.Time) time.Time {
	var next time.Time
	for _, r := range c.rollouts {
		if !active(r) {
			continue
		}
		w := r.Waves[r.Current]
		if w.GetPhase() != flotillav1.WavePhase_WAVE_PHASE_GATED || w.GetHealthyAt() == nil {
			continue
		}
		at := w.GetHealthyAt().AsTime().Add(time.Duration(w.GetGate().GetBakeSeconds()) * time.Second)
		if at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next
}

func (c *Controller) pendingRollbacks() []string {
	var ids []string
	for id, r := range c.rollouts {
		if len(toRollBack(r)) > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// rollBack gives the clusters the rollout id updated their previous
// desired state back, each as a new history entry pinned with why; a
// cluster that fails is tried again at the next Progress.
func (c *Controller) rollBack(ctx context.Context, fleet Fleet, id string) {
	c.mu.Lock()
	r := proto.Clone(c.rollouts[id]).(*flotillav1.FleetRollout)
	c.mu.Unlock()
	reason := fmt.Sprintf("fleet rollout %s: %s", r.GetId(), r.GetMessage())
	for _, t := range toRollBack(r) {
		to, err := fleet.RollBack(ctx, t.GetCluster(), t.GetApp(), t.GetPreviousHistoryId(), reason)
		if err != nil {
			c.log.Error("fleet rollout: roll a cluster back", "rollout", r.GetId(), "cluster", t.GetCluster(), "app", t.GetApp(), "error", err)
			continue
		}
		t.RolledBackTo, t.State = to, fmt.Sprintf("rolled back to history %d (as %d)", t.GetPreviousHistoryId(), to)
		fleet.Event(ctx, &flotillav1.Event{Cluster: t.GetCluster(), App: t.GetApp(), Type: flotillav1.EventType_EVENT_TYPE_WARNING,
			Reason: flotillav1.ReasonFleetRolledBack, Message: fmt.Sprintf("rolled back to history %d: %s", t.GetPreviousHistoryId(), reason), HistoryId: to})
	}
	r.RolledBack = len(toRollBack(r)) == 0
	r.UpdatedAt = timestamppb.New(c.now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rollouts[id].GetId() != r.GetId() {
		return // superseded meanwhile
	}
	if err := c.put(ctx, r); err != nil {
		c.log.Error("fleet rollout: record the rollback", "rollout", r.GetId(), "error", err)
	}
}

// Get returns the rollout of the ApplicationSet or Application name (an
// ApplicationSet first).
func (c *Controller) Get(name string) (*flotillav1.FleetRollout, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, r, err := c.find(name)
	if err != nil {
		return nil, err
	}
	return proto.Clone(r).(*flotillav1.FleetRollout), nil
}

// List returns every rollout the controller holds, the latest of each
// ApplicationSet or Application, sorted by its key ("<kind>/<name>").
func (c *Controller) List() []*flotillav1.FleetRollout {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*flotillav1.FleetRollout, 0, len(c.rollouts))
	for _, id := range slices.Sorted(maps.Keys(c.rollouts)) {
		out = append(out, proto.Clone(c.rollouts[id]).(*flotillav1.FleetRollout))
	}
	return out
}

func (c *Controller) find(name string) (string, *flotillav1.FleetRollout, error) {
	for _, kind := range []string{KindApplicationSet, KindApplication} {
		if r := c.rollouts[kind+"/"+name]; r != nil {
			return kind + "/" + name, r, nil
		}
	}
	return "", nil, fmt.Errorf("%w of an ApplicationSet or Application named %q", ErrNotFound, name)
}

// Promote ends what the rollout name's current wave waits for, as actor:
// it releases a wave that waits for an operator, or ends the current
// wave's gate (approval, bake time, analysis) as passed. A failed rollout
// that was not rolled back resumes with the wave after the failed one.
// wave, when set, must be the current wave's index.
func (c *Controller) Promote(ctx context.Context, name string, wave *int32, actor string) (*flotillav1.FleetRollout, error) {
	return c.operate(ctx, name, func(r *flotillav1.FleetRollout, now time.Time) error {
		if wave != nil && *wave != r.GetCurrent() {
			return fmt.Errorf("wave %d: %w (%d)", *wave, ErrNotCurrent, r.GetCurrent())
		}
		w := r.Waves[r.Current]
		switch {
		case r.GetPhase() == flotillav1.FleetPhase_FLEET_PHASE_FAILED && !r.GetRollback():
			w.Phase, w.Message, w.ApprovedBy = flotillav1.WavePhase_WAVE_PHASE_SKIPPED, "failed, then skipped by "+actor, actor
			enter(r, int(w.GetIndex())+1, now)
		case !active(r):
			return fmt.Errorf("%w: it is %s", ErrNotActive, flotillav1.EnumWord(r.GetPhase().String(), "FLEET_PHASE_"))
		case w.GetPhase() == flotillav1.WavePhase_WAVE_PHASE_WAITING:
			w.StartedBy, w.MaxUpdate = actor, int32(len(w.Targets))
			enter(r, int(w.GetIndex()), now)
		default:
			w.ApprovedBy = actor
			pass(r, w, "promoted by "+actor, now)
		}
		return nil
	})
}

// Abort halts the rollout name, as actor; with rollback, the clusters it
// updated get their previous desired state back.
func (c *Controller) Abort(ctx context.Context, name string, rollback bool, actor string) (*flotillav1.FleetRollout, error) {
	return c.operate(ctx, name, func(r *flotillav1.FleetRollout, now time.Time) error {
		switch {
		case active(r):
			r.Phase, r.Message, r.FinishedAt = flotillav1.FleetPhase_FLEET_PHASE_ABORTED, "aborted by "+actor, timestamppb.New(now)
		case r.GetPhase() == flotillav1.FleetPhase_FLEET_PHASE_FAILED && rollback:
		default:
			return fmt.Errorf("%w: it is %s", ErrNotActive, flotillav1.EnumWord(r.GetPhase().String(), "FLEET_PHASE_"))
		}
		r.Rollback = r.GetRollback() || rollback
		return nil
	})
}

func (c *Controller) operate(ctx context.Context, name string, change func(*flotillav1.FleetRollout, time.Time) error) (*flotillav1.FleetRollout, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, prev, err := c.find(name)
	if err != nil {
		return nil, err
	}
	r := proto.Clone(prev).(*flotillav1.FleetRollout)
	now := c.now()
	if err := change(r, now); err != nil {
		return nil, err
	}
	r.UpdatedAt = timestamppb.New(now)
	if err := c.put(ctx, r); err != nil {
		return nil, err
	}
	return proto.Clone(r).(*flotillav1.FleetRollout), nil
}

// transitions are the events of what progress changed: waves that passed
// or failed, and the rollout's end.
func transitions(prev, r *flotillav1.FleetRollout) []*flotillav1.Event {
	var out []*flotillav1.Event
	for i, w := range r.GetWaves() {
		if w.GetPhase() == prev.GetWaves()[i].GetPhase() {
			continue
		}
		typ, reason := flotillav1.EventType_EVENT_TYPE_NORMAL, flotillav1.ReasonFleetWaveProgressed
		if w.GetPhase() == flotillav1.WavePhase_WAVE_PHASE_FAILED {
			typ, reason = flotillav1.EventType_EVENT_TYPE_WARNING, flotillav1.ReasonFleetWaveFailed
		}
		msg := fmt.Sprintf("fleet rollout %s: wave %d (%s) is %s", r.GetId(), i, w.GetSelector(), flotillav1.EnumWord(w.GetPhase().String(), "WAVE_PHASE_"))
		if w.GetMessage() != "" {
			msg += ": " + w.GetMessage()
		}
		out = append(out, &flotillav1.Event{App: r.GetName(), Type: typ, Reason: reason, Message: msg, Revision: r.GetRevision()})
	}
	return out
}
