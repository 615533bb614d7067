package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/fleet"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// fleetActor is who fleet rollouts' own rollbacks are pinned by.
const fleetActor = "flotilla fleet rollout"

// wakeFleet asks the reconcile loop to move the fleet rollouts on.
func (h *Hub) wakeFleet() {
	select {
	case h.fleetWake <- struct{}{}:
	default: // one is pending; it will see this change too
	}
}

// advanceFleet moves the fleet rollouts on and publishes the waves they
// release from the last discovery (no fetch, no render: what Git said is
// unchanged). It returns a channel that fires when a bake time ends, nil
// for none. A publish that fails asks for a full pass, which retries.
func (h *Hub) advanceFleet(ctx context.Context) <-chan time.Time {
	due, next := h.fleet.Progress(ctx, hubFleet{h})
	if due && h.last != nil {
		ctx, span := tracer.Start(ctx, "hub.fleet.release")
		// The clusters as that discovery knew them: a cluster that
		// registered since is held from this publish, not taken for gone.
		report, err := h.publisher.Publish(ctx, h.last.result, h.last.clusters.held, h.fleet)
		if report != nil {
			h.publishedEvents(ctx, report)
		}
		span.End()
		if err != nil {
			h.log.Error("fleet rollout: publish a wave", "error", err)
			h.requestReconcile(span.SpanContext())
		}
	}
	if next.IsZero() {
		return nil
	}
	return time.After(time.Until(next))
}

// hubFleet is the fleet as the rollouts controller reads and changes it.
type hubFleet struct{ h *Hub }

func (f hubFleet) Observe(key string) fleet.Observed {
	cluster, app, _ := appkey.Split(key)
	f.h.mu.Lock()
	st := f.h.statuses[key]
	f.h.mu.Unlock()
	return fleet.Observed{Published: f.h.publisher.Latest(cluster, app), Status: st}
}

func (f hubFleet) RollBack(ctx context.Context, cluster, app string, to uint64, reason string) (uint64, error) {
	entry, err := f.h.publisher.Entry(ctx, cluster, app, to)
	if err != nil {
		return 0, err
	}
	ds, err := f.h.publisher.Rollback(ctx, entry, fleetActor, reason)
	if err != nil {
		return 0, err
	}
	return ds.GetHistoryId(), nil
}

func (f hubFleet) Event(ctx context.Context, ev *flotillav1.Event) { f.h.event(ctx, ev) }

// FleetRollout implements api.Hub.
func (h *Hub) FleetRollout(name string) (*flotillav1.FleetRollout, error) {
	r, err := h.fleet.Get(name)
	return r, fleetError(err)
}

// FleetRollouts implements api.Hub.
func (h *Hub) FleetRollouts() []*flotillav1.FleetRollout {
	return h.fleet.List()
}

// PromoteFleetRollout implements api.Hub.
func (h *Hub) PromoteFleetRollout(ctx context.Context, name string, wave *int32, actor string) (*flotillav1.FleetRollout, error) {
	r, err := h.fleet.Promote(ctx, name, wave, actor)
	if err != nil {
		return nil, fleetError(err)
	}
	h.wakeFleet()
	return r, nil
}

// AbortFleetRollout implements api.Hub.
func (h *Hub) AbortFleetRollout(ctx context.Context, name string, rollback bool, actor string) (*flotillav1.FleetRollout, error) {
	r, err := h.fleet.Abort(ctx, name, rollback, actor)
	if err != nil {
		return nil, fleetError(err)
	}
	h.wakeFleet()
	return r, nil
}

// fleetError wraps the controller's refusals in the API's errors; any
// other error is the record's write failing (NATS away, or electing a
// stream leader): the call may be tried again.
func fleetError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fleet.ErrNotFound):
		return fmt.Errorf("%w: %w", api.ErrNotFound, err)
	case errors.Is(err, fleet.ErrNotActive), errors.Is(err, fleet.ErrNotCurrent):
		return fmt.Errorf("%w: %w", api.ErrFailedPrecondition, err)
	}
	return fmt.Errorf("%w: %w", api.ErrUnavailable, err)
}
