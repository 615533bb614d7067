package rollouts

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
)

// canary runs strategy.canary: the steps in order (setWeight, pause,
// analysis, setCanaryScale), background analysis, promotion once the last
// step is done, and an abort back to stable.
func (r *rolloutCtx) canary(ctx context.Context) error {
	c := r.ro.Spec.Strategy.Canary
	n := int32(len(c.Steps))
	route, _ := c.router() // validated by parse
	replicas := r.ro.replicas()

	if r.hash == r.st.StableRS {
		return r.canaryPromoted(ctx, c, route, n)
	}
	if r.st.Abort {
		return r.canaryAborted(ctx, c, route)
	}
	if err := r.pointService(ctx, c.StableService, r.st.StableRS); err != nil {
		return err
	}
	if err := r.pointService(ctx, c.CanaryService, r.hash); err != nil {
		return err
	}
	idx := int32(0)
	if r.st.CurrentStepIndex != nil {
		idx = min(max(*r.st.CurrentStepIndex, 0), n)
	}
	if r.st.PromoteFull && idx < n {
		idx = n
		r.unpause()
	}
	r.st.CurrentStepIndex = &idx
	if r.ro.Spec.Paused {
		r.st.Phase, r.st.Message = PhasePaused, "manually paused"
		return nil
	}
	keep := []string{r.runName(strconv.Itoa(int(idx))), r.runName("bg")}
	if err := r.terminateRuns(ctx, keep...); err != nil {
		return err
	}
	r.st.Phase, r.st.Message = PhaseProgressing, ""
	for idx < n {
		step := &c.Steps[idx]
		name := stepName(int(idx), step)
		r.stepBegins(name)
		weight, canaryWant, stableWant := r.canaryTarget(c, idx, route != nil)
		done, err := r.scaleCanary(ctx, c, route, weight, canaryWant, stableWant)
		if err != nil {
			return err
		}
		if !done {
			r.st.Message = fmt.Sprintf("step %d/%d: waiting for %d canary and %d stable replicas to be available", idx+1, n, canaryWant, stableWant)
			return r.background(ctx, c, route, idx)
		}
		advance := false
		switch {
		case step.SetWeight != nil, step.SetCanaryScale != nil:
			advance = true
		case step.Pause != nil:
			advance = r.pauseStep(step.Pause, name)
		case step.Analysis != nil:
			run, err := r.analyse(ctx, r.runName(strconv.Itoa(int(idx))), runStep, step.Analysis)
			if err != nil {
				return fmt.Errorf("steps[%d].analysis: %w", idx, err)
			}
			r.st.Canary.CurrentStepAnalysisRunStatus = run
			advance, err = r.judge(ctx, run, func(ctx context.Context) error { return r.canaryAborted(ctx, c, route) })
			if err != nil || r.st.Abort {
				return err
			}
		}
		if !advance {
			return r.background(ctx, c, route, idx)
		}
		r.stepEnds(ctx, name, "completed")
		idx++
		r.st.CurrentStepIndex = &idx
	}
	if err := r.background(ctx, c, route, idx); err != nil || r.st.Abort {
		return err
	}
	// Every step is done: the canary becomes the stable version.
	weight, canaryWant, stableWant := r.canaryTarget(c, n, route != nil)
	done, err := r.scaleCanary(ctx, c, route, weight, canaryWant, stableWant)
	if err != nil {
		return err
	}
	if !done {
		r.st.Message = fmt.Sprintf("promoting: waiting for %d of %d replicas to be available", available(r.newRS), replicas)
		return nil
	}
	r.st.StableRS, r.stableRS = r.hash, r.newRS
	r.st.PromoteFull = false
	return r.canaryPromoted(ctx, c, route, n)
}

// canaryPromoted is the steady state: one version, both Services on it,
// no canary weight, every other ReplicaSet scaled down.
func (r *rolloutCtx) canaryPromoted(ctx context.Context, c *Canary, route router, n int32) error {
	r.st.CurrentStepIndex = &n
	// The stable Service moves to the new version before the router sends
	// it everything back, so no request goes to the old one meanwhile.
	if err := r.pointService(ctx, c.StableService, r.hash); err != nil {
		return err
	}
	if route != nil {
		if err := route.setWeight(ctx, r, c, 0); err != nil {
			return err
		}
	}
	r.st.Canary.Weights = &Weights{Canary: WeightDestination{PodTemplateHash: r.hash}, Stable: WeightDestination{PodTemplateHash: r.hash, Weight: 100}}
	// Behind a router the old version stays up a while: the router may
	// still send to it. Without one, its pods leave with their Service.
	var delay time.Duration
	if route != nil {
		delay = seconds(c.ScaleDownDelaySeconds, 30)
	}
	return r.steady(ctx, []string{c.StableService, c.CanaryService}, delay)
}

// canaryAborted sends everything back to stable: canary at zero, Services
// and weights on stable, the rollout Degraded with the reason. It stays
// so until a retry or a new revision.
func (r *rolloutCtx) canaryAborted(ctx context.Context, c *Canary, route router) error {
	zero := int32(0)
	r.st.CurrentStepIndex = &zero
	if err := r.terminateRuns(ctx); err != nil {
		return err
	}
	if route != nil {
		if err := route.setWeight(ctx, r, c, 0); err != nil {
			return err
		}
	}
	if err := r.scale(ctx, r.stableRS, r.ro.replicas()); err != nil {
		return err
	}
	if err := r.pointService(ctx, c.CanaryService, r.st.StableRS); err != nil {
		return err
	}
	if err := r.pointService(ctx, c.StableService, r.st.StableRS); err != nil {
		return err
	}
	// Behind a router the canary stays up a while, as in Argo Rollouts:
	// the router may still send to it.
	var delay time.Duration
	if route != nil {
		delay = seconds(c.AbortScaleDownDelaySeconds, 30)
	}
	if err := r.scaleDownAfter(ctx, r.newRS, delay); err != nil {
		return err
	}
	if err := r.scaleDownOthers(ctx, 0); err != nil {
		return err
	}
	r.st.Canary.Weights = &Weights{Canary: WeightDestination{PodTemplateHash: r.hash}, Stable: WeightDestination{PodTemplateHash: r.st.StableRS, Weight: 100}}
	r.markAborted()
	return nil
}

// background runs strategy.canary.analysis from its startingStep on.
func (r *rolloutCtx) background(ctx context.Context, c *Canary, route router, idx int32) error {
	if c.Analysis == nil || r.st.Abort || r.st.PromoteFull {
		return nil // a full promotion skips analysis, as in Argo Rollouts
	}
	if start := c.Analysis.StartingStep; start != nil && idx < *start {
		return nil
	}
	run, err := r.analyse(ctx, r.runName("bg"), runBackground, &c.Analysis.Analysis)
	if err != nil {
		return fmt.Errorf("analysis: %w", err)
	}
	r.st.Canary.CurrentBackgroundAnalysisRunStatus = run
	_, err = r.judge(ctx, run, func(ctx context.Context) error { return r.canaryAborted(ctx, c, route) })
	return err
}

// judge acts on a run's phase: Successful lets the rollout go on;
// Failed or Error aborts it (onAbort puts it back on stable);
// Inconclusive pauses it until an operator promotes; a running run waits.
func (r *rolloutCtx) judge(ctx context.Context, run *RunStatus, onAbort func(ctx context.Context) error) (bool, error) {
	switch run.Status {
	case analysis.Successful:
		return true, nil
	case analysis.Failed, analysis.Error:
		r.abort(fmt.Sprintf("RolloutAborted: analysis run %s %s: %s", run.Name, run.Status, run.Message))
		return false, onAbort(ctx)
	case analysis.Inconclusive:
		since := r.pausedSince(pauseInconclusive)
		if since == nil && r.st.ControllerPause {
			r.unpause() // an operator promoted past it
			return true, nil
		}
		r.pause(pauseInconclusive)
		r.st.Phase, r.st.Message = PhasePaused, "analysis run "+run.Name+" was inconclusive: promote to go on, abort to go back"
		return false, nil
	}
	r.st.Message = "analysis run " + run.Name + " is running"
	return false, nil
}

// pauseStep runs a pause step and reports whether it is over: its
// duration passed, or (without one) an operator promoted, which removes
// the pause condition the step added.
func (r *rolloutCtx) pauseStep(p *Pause, step string) bool {
	d, _ := pauseDuration(p)
	since := r.pausedSince(pauseCanaryStep)
	if began, ok := r.stepStart(step + " paused"); ok && since != nil && began.After(*since) {
		since = &began // the status keeps whole seconds; this agent saw the pause begin
	}
	if since == nil {
		if r.st.ControllerPause {
			r.unpause() // promoted
			r.stepForget(step + " paused")
			return true
		}
		r.pause(pauseCanaryStep)
		r.stepBegins(step + " paused")
		since = &r.now
	}
	if d > 0 {
		end := since.Add(d)
		if !r.now.Before(end) {
			r.unpause()
			r.stepForget(step + " paused")
			return true
		}
		r.wakeAt(end)
	}
	r.st.Phase, r.st.Message = PhasePaused, pauseCanaryStep
	return false
}

// canaryTarget is the traffic weight and the canary's and the stable
// set's sizes at step idx: the last setWeight up to it (100 past the last
// step), the canary sized by that weight (or by setCanaryScale), and
// without a traffic router the stable set taking the rest, so the replica
// ratio is the weight, as in Argo Rollouts. Behind a router the stable set
// keeps its size until after promotion: the router sends to it until then.
func (r *rolloutCtx) canaryTarget(c *Canary, idx int32, routed bool) (weight, canary, stable int32) {
	replicas := r.ro.replicas()
	var scale *SetCanaryScale
	for i := int32(0); i <= idx && i < int32(len(c.Steps)); i++ {
		if w := c.Steps[i].SetWeight; w != nil {
			weight = *w
		}
		if s := c.Steps[i].SetCanaryScale; s != nil {
			scale = s
		}
	}
	if idx >= int32(len(c.Steps)) {
		weight, scale = 100, nil
	}
	canary = int32(math.Ceil(float64(replicas) * float64(weight) / 100))
	switch {
	case scale == nil || scale.MatchTrafficWeight:
	case scale.Replicas != nil:
		canary = *scale.Replicas
	case scale.Weight != nil:
		canary = int32(math.Ceil(float64(replicas) * float64(*scale.Weight) / 100))
	}
	stable = replicas
	if !routed {
		stable = max(replicas-canary, 0)
	}
	return weight, canary, stable
}

// scaleCanary moves the canary and stable sets toward their sizes within
// maxSurge (default 25 %, rounded up) above and maxUnavailable (default
// 25 %, rounded down) below spec.replicas (with a router, traffic does not
// follow pods, so they take their sizes at once, as in Argo Rollouts),
// scales other sets down, and with a router sets the weights once the
// canary is available. It reports
// whether both sets run their sizes, all available.
func (r *rolloutCtx) scaleCanary(ctx context.Context, c *Canary, route router, weight, canaryWant, stableWant int32) (bool, error) {
	if err := r.scaleDownOthers(ctx, 0); err != nil {
		return false, err
	}
	canaryNext, stableNext := canaryWant, stableWant
	if route == nil {
		canaryNext, stableNext = r.boundedSizes(c, canaryWant, stableWant)
	}
	if err := r.scale(ctx, r.newRS, canaryNext); err != nil {
		return false, err
	}
	if err := r.scale(ctx, r.stableRS, stableNext); err != nil {
		return false, err
	}
	if err := r.keepScaled(ctx, r.stableRS); err != nil {
		return false, err
	}
	if err := r.keepScaled(ctx, r.newRS); err != nil { // a retry after an abort
		return false, err
	}
	done := settled(r.newRS, canaryWant) && settled(r.stableRS, stableWant) && r.othersDown()
	if done && route != nil {
		if err := route.setWeight(ctx, r, c, weight); err != nil {
			return false, err
		}
	}
	current := weight
	if !done && r.st.Canary.Weights != nil {
		current = r.st.Canary.Weights.Canary.Weight
	}
	r.st.Canary.Weights = &Weights{Canary: WeightDestination{PodTemplateHash: r.hash, Weight: current},
		Stable: WeightDestination{PodTemplateHash: r.st.StableRS, Weight: 100 - current}}
	return done, nil
}

// boundedSizes are the next sizes of the canary and stable sets on the way
// to their wanted sizes: at most maxSurge pods above spec.replicas, at
// most maxUnavailable available pods below it.
func (r *rolloutCtx) boundedSizes(c *Canary, canaryWant, stableWant int32) (int32, int32) {
	replicas := r.ro.replicas()
	surge := percentOf(c.MaxSurge, "25%", replicas, true)
	unavailable := percentOf(c.MaxUnavailable, "25%", replicas, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	canaryNow, stableNow := specReplicas(r.newRS), specReplicas(r.stableRS)
	canaryNext, stableNext := canaryNow, stableNow
	maxTotal := replicas + surge
	if canaryWant > canaryNow {
		canaryNext = min(canaryWant, max(canaryNow, maxTotal-stableNow))
	}
	if stableWant > stableNow {
		stableNext = min(stableWant, max(stableNow, maxTotal-canaryNext))
	}
	budget := available(r.newRS) + available(r.stableRS) - (replicas - unavailable)
	if stableWant < stableNow {
		stableNext = scaleDown(stableNow, stableWant, available(r.stableRS), &budget)
	}
	if canaryWant < canaryNow {
		canaryNext = scaleDown(canaryNow, canaryWant, available(r.newRS), &budget)
	}
	return canaryNext, stableNext
}

// scaleDown lowers a set from now toward want: its unavailable pods go
// freely, available ones only as far as budget (available pods above the
// minimum) allows.
func scaleDown(now, want, avail int32, budget *int32) int32 {
	unavailable := max(now-avail, 0)
	next := now - min(now-want, unavailable)
	take := max(min(next-want, *budget), 0)
	*budget -= take
	return next - take
}

func (r *rolloutCtx) othersDown() bool {
	for _, rs := range r.others {
		if specReplicas(rs) != 0 {
			return false
		}
	}
	return true
}
