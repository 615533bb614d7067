package reconcile

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/flotilla-dev/flotilla/agent/apply"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// driftWindow coalesces the watch events of one burst (a kubectl apply of
// several objects, a rollout's writes) into one drift check.
const driftWindow = 50 * time.Millisecond

// observeWindow coalesces the changes of an application's objects (pods
// coming up, a controller's status writes) into one look at their health:
// at most one LIST per kind and namespace of the application per window.
const observeWindow = 250 * time.Millisecond

// minWaveWait bounds how often a wave analysis that is due at once (or
// overdue) is looked at again.
const minWaveWait = 10 * time.Millisecond

// appWorker owns one application: it syncs one desired state at a time,
// retries a failed sync per syncPolicy.retry, checks and heals drift,
// follows health and runs the analysis of its fleet wave.
// Everything but the mutex-guarded fields belongs to its run goroutine.
type appWorker struct {
	syncer  *Syncer
	app     string
	wake    chan struct{}
	syncNow chan syncRequest
	drift   chan apply.ObjectRef
	// changed wakes the worker when one of the application's objects
	// changed (its status included: a Deployment's pods came up, an
	// Ingress got an address, the rollouts controller moved a Rollout), so
	// it looks at their health again.
	changed chan struct{}

	mu      sync.Mutex
	pending *Desired
	current *Desired // the last one taken for syncing
	seen    uint64   // highest history id offered

	// desired are the current desired state's rendered objects once it
	// synced (nil before, or after a failure): what drift is measured
	// against.
	desired *desiredObjects
	// synced is true when the last sync of current succeeded.
	synced bool
	// attempts counts the failed syncs of current (for retry).
	attempts int64
	// drifted describes the outstanding drift by ObjectRef.Key, and
	// driftReported is what was last reported of it.
	drifted       map[string]string
	driftReported string
	// waveNext is when the analysis of the current desired state's fleet
	// wave wants its next look (zero: none), and waveExpired the history
	// id whose earlier wave analyses were ended (waveAnalysis).
	waveNext    time.Time
	waveExpired uint64
}

func newWorker(s *Syncer, app string) *appWorker {
	return &appWorker{syncer: s, app: app, wake: make(chan struct{}, 1), syncNow: make(chan syncRequest), drift: make(chan apply.ObjectRef, 256),
		changed: make(chan struct{}, 1), drifted: map[string]string{}}
}

// syncRequest is an operator's "sync now"; done gets the outcome.
type syncRequest struct {
	done chan syncReply
}

type syncReply struct {
	historyID uint64
	err       error
}

// latest is the newest desired state offered: the pending one, else the
// one last synced.
func (w *appWorker) latest() *Desired {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending != nil {
		return w.pending
	}
	return w.current
}

// offer makes d pending unless one as new was offered before; it returns
// the newest history id seen before when d is older (a replay), else 0.
func (w *appWorker) offer(d Desired) (newer uint64) {
	w.mu.Lock()
	if d.State.GetHistoryId() <= w.seen {
		seen := w.seen
		w.mu.Unlock()
		if d.State.GetHistoryId() < seen {
			return seen
		}
		return 0 // the same entry again
	}
	w.seen = d.State.GetHistoryId()
	w.pending = &d
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return 0
}

// take removes the pending desired state and makes it the current one;
// prev is the one current before.
func (w *appWorker) take() (d, prev *Desired) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, prev = w.pending, w.current
	if d != nil {
		w.pending, w.current = nil, d
	}
	return d, prev
}

// untake makes prev current again in place of d, which its sync refused
// (a replay): a refused desired state is never the application's.
func (w *appWorker) untake(d, prev *Desired) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.current == d {
		w.current = prev
	}
}

// noticeChange tells the worker that one of its objects changed, without
// blocking: one pending notice stands for any number.
func (w *appWorker) noticeChange() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// noticeDrift hands a watch event's object to the worker without blocking
// the watch; a full queue drops it, and the periodic resync catches it.
func (w *appWorker) noticeDrift(ref apply.ObjectRef) {
	select {
	case w.drift <- ref:
	default:
	}
}

func (w *appWorker) run(ctx context.Context) {
	s := w.syncer
	var retry, coalesce, observe, analyse <-chan time.Time
	var analyseAt time.Time // when analyse fires: w.waveNext as last armed
	drifted := map[string]apply.ObjectRef{}
	var resync <-chan time.Time // off when no interval is set
	if s.opts.ResyncInterval > 0 {
		resync = time.After(jitter(s.opts.ResyncInterval))
	}

	// syncOne runs d and arranges its retry; attempt 0 is a new desired
	// state (or an operator's sync), which resets the retry count. prev is
	// the desired state current before d, current again if d is refused.
	syncOne := func(d, prev *Desired, force bool, attempt int64) error {
		out := s.sync(ctx, d, force, attempt)
		if out.refused {
			w.untake(d, prev)
			return out.err
		}
		w.attempts = attempt
		retry = nil
		w.synced = out.err == nil && d.State.GetDeletion() == nil
		w.desired = nil
		if out.rendered != nil {
			// Should keeping them fail, the next drift check renders
			// them again.
			desired, err := keepDesired(out.rendered)
			if err != nil {
				s.log.Error("keep the synced objects for drift checks", "app", w.app, "error", err)
			}
			w.desired = desired
		}
		clear(w.drifted)
		w.driftReported = ""
		w.waveNext = time.Time{} // the look after the sync sets it again
		if w.synced && out.rendered == nil {
			// Applied before this agent started (a no-op): what changed
			// while it was away shows only in a full comparison.
			resync = time.After(time.Second)
		}
		if out.retryIn > 0 {
			retry = time.After(out.retryIn)
		}
		if w.synced {
			// From here on its objects' health is followed as they change
			// (watch-driven); this first look covers what changed before
			// their watches began (an agent restart's no-op).
			w.noticeChange()
		}
		return out.err
	}
	for {
		if !w.waveNext.Equal(analyseAt) {
			// The wave analysis' next measurement is due at a new time.
			analyseAt, analyse = w.waveNext, nil
			if !analyseAt.IsZero() {
				analyse = time.After(max(time.Until(analyseAt), minWaveWait))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			if d, prev := w.take(); d != nil {
				_ = syncOne(d, prev, false, 0)
			}
		case req := <-w.syncNow:
			d, prev := w.take()
			if d == nil {
				d = w.latest()
				prev = d
			}
			if d == nil {
				req.done <- syncReply{err: fmt.Errorf("%s: no desired state received yet", w.app)}
				continue
			}
			req.done <- syncReply{historyID: d.State.GetHistoryId(), err: syncOne(d, prev, true, 0)}
		case <-retry:
			if d := w.latest(); d != nil {
				_ = syncOne(d, d, false, w.attempts+1)
			}
		case ref := <-w.drift:
			drifted[ref.Key()] = ref
			if coalesce == nil {
				coalesce = time.After(driftWindow)
			}
		case <-coalesce:
			coalesce = nil
			w.guard(ctx, "checking drift", func() { w.checkDrift(ctx, drifted) })
			clear(drifted)
		case <-w.changed:
			if observe == nil {
				observe = time.After(observeWindow)
			}
		case <-observe:
			observe = nil
			w.guard(ctx, "observing health", func() { w.observeHealth(ctx) })
		case <-analyse:
			analyse, analyseAt, w.waveNext = nil, time.Time{}, time.Time{}
			w.guard(ctx, "analysing the fleet wave", func() { w.observeWaveAnalysis(ctx) })
		case <-resync:
			w.guard(ctx, "checking drift", func() { w.checkDrift(ctx, nil) })
			// A change a watch missed (its connection dropped) shows here.
			w.guard(ctx, "observing health", func() { w.observeHealth(ctx) })
			resync = time.After(jitter(s.opts.ResyncInterval))
		}
	}
}

// guard runs one of the worker's checks; a panic in it is logged and
// reported as a warning on the application, and the worker carries on.
func (w *appWorker) guard(ctx context.Context, what string, fn func()) {
	err := w.syncer.recovered(w.app, what, func() error { fn(); return nil })
	if err == nil {
		return
	}
	if d := w.latest(); d != nil {
		w.syncer.event(ctx, newSyncSpec(d.State), flotillav1.EventType_EVENT_TYPE_WARNING, flotillav1.ReasonInternalError, err.Error())
	}
}

// jitter spreads periodic resyncs of many applications over ±10 %.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// SyncNow re-applies app's newest desired state at once, writing whatever
// differs even when that state was applied before (an operator's sync:
// it heals drift), and returns its history id once the objects are
// applied.
func (s *Syncer) SyncNow(ctx context.Context, app string) (uint64, error) {
	w := s.worker(app)
	if w == nil {
		return 0, fmt.Errorf("%s: no desired state received yet", app)
	}
	req := syncRequest{done: make(chan syncReply, 1)}
	select {
	case w.syncNow <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.historyID, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
