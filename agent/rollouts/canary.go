package rollouts

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
	if r.promotingFully() && idx < n {
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
	// With dynamicStableScale it has no traffic left by then, and goes at
	// once, as in Argo Rollouts.
	var delay time.Duration
	if route != nil && !c.DynamicStableScale {
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
	if err := r.pointService(ctx, c.CanaryService, r.st.StableRS); err != nil {
		return err
	}
	if err := r.pointService(ctx, c.StableService, r.st.StableRS); err != nil {
		return err
	}
	if route == nil {
		// Back to stable within maxSurge and maxUnavailable, at once as in
		// Argo Rollouts: abortScaleDownDelaySeconds is for routers only.
		if _, err := r.scaleBasic(ctx, c, 0); err != nil {
			return err
		}
	} else {
		if err := r.scale(ctx, r.stableRS, r.ro.replicas()); err != nil {
			return err
		}
		// Traffic goes back once the stable pods can take it; the canary
		// stays up abortScaleDownDelaySeconds (default 30), as the router
		// may still send to it.
		if !settled(r.stableRS, r.ro.replicas()) && c.DynamicStableScale {
			r.markAborted()
			return nil // the stable set grows back first (its pods bring the next look)
		}
		if err := route.setWeight(ctx, r, c, 0); err != nil {
			return err
		}
		if err := r.scaleDownAfter(ctx, r.newRS, seconds(c.AbortScaleDownDelaySeconds, 30)); err != nil {
			return err
		}
		if err := r.scaleDownOthers(ctx, 0); err != nil {
			return err
		}
	}
	r.st.Canary.Weights = &Weights{Canary: WeightDestination{PodTemplateHash: r.hash}, Stable: WeightDestination{PodTemplateHash: r.st.StableRS, Weight: 100}}
	r.markAborted()
	return nil
}

// background runs strategy.canary.analysis from its startingStep on.
func (r *rolloutCtx) background(ctx context.Context, c *Canary, route router, idx int32) error {
	if c.Analysis == nil || r.st.Abort || r.promotingFully() {
		return nil // a full promotion or a fast rollback skips analysis, as in Argo Rollouts
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
// step). Without a traffic router the two sets split spec.replicas so the
// replica ratio comes closest to the weight, as in Argo Rollouts (at
// setWeight: 10 of 10 replicas, 1 canary and 9 stable pods). Behind a
// router the canary is sized by the weight (or by setCanaryScale) and the
// stable set keeps its size until after promotion, since the router sends
// to it until then; with dynamicStableScale it shrinks as traffic leaves
// it.
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
	if !routed {
		surge, _ := fenceposts(c.MaxSurge, c.MaxUnavailable, replicas)
		canary, stable = weightedCounts(replicas, weight, surge)
		return weight, canary, stable
	}
	canary = ceilShare(replicas, weight)
	switch {
	case scale == nil || scale.MatchTrafficWeight:
	case scale.Replicas != nil:
		canary = *scale.Replicas
	case scale.Weight != nil:
		canary = ceilShare(replicas, *scale.Weight)
	}
	stable = replicas
	if c.DynamicStableScale {
		// The stable set gives up pods only once traffic left them.
		stable = ceilShare(replicas, 100-weight)
		if w := r.st.Canary.Weights; w != nil {
			stable = max(stable, ceilShare(replicas, w.Stable.Weight))
		}
	}
	return weight, canary, stable
}

// ceilShare is weight percent of replicas, rounded up.
func ceilShare(replicas, weight int32) int32 {
	return int32(math.Ceil(float64(replicas) * float64(weight) / 100))
}

// scaleCanary moves the canary and stable sets toward their sizes: behind
// a router at once (traffic does not follow pods there, as in Argo
// Rollouts), without one a step at a time within maxSurge and
// maxUnavailable (scaleBasic). With a router it sets the weights once the
// canary is available. It reports whether both sets run their sizes, all
// available.
func (r *rolloutCtx) scaleCanary(ctx context.Context, c *Canary, route router, weight, canaryWant, stableWant int32) (bool, error) {
	var done bool
	if route == nil {
		var err error
		if done, err = r.scaleBasic(ctx, c, weight); err != nil {
			return false, err
		}
	} else {
		if err := r.scaleDownOthers(ctx, 0); err != nil {
			return false, err
		}
		if err := r.scale(ctx, r.newRS, canaryWant); err != nil {
			return false, err
		}
		if err := r.scale(ctx, r.stableRS, stableWant); err != nil {
			return false, err
		}
		done = settled(r.newRS, canaryWant) && settled(r.stableRS, stableWant) && r.othersDown()
	}
	if err := r.keepScaled(ctx, r.stableRS); err != nil {
		return false, err
	}
	if err := r.keepScaled(ctx, r.newRS); err != nil { // a retry after an abort
		return false, err
	}
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

// scaleBasic takes a canary without a traffic router one step toward
// weight, as Argo Rollouts' basic canary does: the stable set first, then
// the canary, then the other sets, each as far as maxSurge and
// maxUnavailable allow (basicCanaryCounts); one write per call, the
// ReplicaSets' changes bring the next. It reports whether the sets are at
// their sizes for weight, all available, and the others drained.
func (r *rolloutCtx) scaleBasic(ctx context.Context, c *Canary, weight int32) (bool, error) {
	replicas := r.ro.replicas()
	surge, unavailable := fenceposts(c.MaxSurge, c.MaxUnavailable, replicas)
	canary := replicaSetSize{specReplicas(r.newRS), available(r.newRS)}
	var stable *replicaSetSize
	if r.stableRS != nil && r.stableRS != r.newRS {
		stable = &replicaSetSize{specReplicas(r.stableRS), available(r.stableRS)}
	}
	oldSpec, oldAvailable := int32(0), int32(0)
	for _, rs := range r.others {
		oldSpec += specReplicas(rs)
		oldAvailable += available(rs)
	}
	canaryNext, stableNext := basicCanaryCounts(replicas, weight, surge, unavailable, canary, stable, oldSpec)
	if stable != nil && stableNext != stable.spec {
		return false, r.scale(ctx, r.stableRS, stableNext)
	}
	if canaryNext != canary.spec {
		return false, r.scale(ctx, r.newRS, canaryNext)
	}
	// The other sets go within maxUnavailable, newest revision first.
	budget := canary.available + oldAvailable - (replicas - unavailable)
	if stable != nil {
		budget += stable.available
	}
	others := slices.Clone(r.others)
	slices.SortFunc(others, func(a, b *unstructured.Unstructured) int { return revisionOf(b) - revisionOf(a) })
	for _, rs := range others {
		if budget <= 0 {
			break
		}
		n := specReplicas(rs)
		if n == 0 {
			continue
		}
		next := max(n-budget, 0)
		if err := r.scale(ctx, rs, next); err != nil {
			return false, err
		}
		budget -= n - next
	}
	wantCanary, wantStable := weightedCounts(replicas, weight, surge)
	if stable == nil {
		wantCanary, wantStable = replicas, 0
	}
	return settled(r.newRS, wantCanary) && (stable == nil || settled(r.stableRS, wantStable)) && r.othersDown() && oldAvailable == 0, nil
}

// revisionOf is a ReplicaSet's rollout revision (0 when unknown).
func revisionOf(rs *unstructured.Unstructured) int {
	n, _ := strconv.Atoi(rs.GetAnnotations()[revisionAnnotation])
	return n
}

func (r *rolloutCtx) othersDown() bool {
	for _, rs := range r.others {
		if specReplicas(rs) != 0 {
			return false
		}
	}
	return true
}
