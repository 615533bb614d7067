package rollouts

import (
	"math"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// replicaSetSize is what the basic canary's arithmetic reads of a
// ReplicaSet: its spec and available replicas.
type replicaSetSize struct {
	spec, available int32
}

// fenceposts resolves maxSurge and maxUnavailable (25 % each by default)
// against spec.replicas as Argo Rollouts does: a string is a percentage
// with or without its "%", surge rounds up and unavailable down, and
// when both come to zero maxUnavailable is one. A value that does not
// parse makes both zero, as in Argo Rollouts.
func fenceposts(maxSurge, maxUnavailable *intstr.IntOrString, replicas int32) (surge, unavailable int32) {
	s, errS := scaledValue(maxSurge, "25", replicas, true)
	u, errU := scaledValue(maxUnavailable, "25", replicas, false)
	if errS != nil || errU != nil {
		return 0, 0
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return s, min(u, replicas)
}

func scaledValue(v *intstr.IntOrString, def string, total int32, roundUp bool) (int32, error) {
	if v == nil {
		d := intstr.FromString(def)
		v = &d
	}
	if v.Type == intstr.Int {
		return int32(v.IntValue()), nil
	}
	p, err := strconv.Atoi(strings.ReplaceAll(v.StrVal, "%", ""))
	if err != nil {
		return 0, err
	}
	x := float64(p) * float64(total) / 100
	if roundUp {
		return int32(math.Ceil(x)), nil
	}
	return int32(math.Floor(x)), nil
}

// weightedCounts splits spec.replicas into canary and stable pods whose
// ratio comes closest to weight (of 100), using one surge pod when
// maxSurge allows and that comes closer; a weight strictly between 0 and
// 100 never leaves the canary without a pod when two or more pods run.
// It is Argo Rollouts' approximateWeightedCanaryStableReplicaCounts.
func weightedCounts(replicas, weight, surge int32) (canary, stable int32) {
	const maxWeight = 100
	if replicas == 0 {
		return 0, 0
	}
	type option struct{ canary, total int32 }
	ceil := int32(math.Ceil(float64(replicas*weight) / maxWeight))
	floor := int32(math.Floor(float64(replicas*weight) / maxWeight))
	tied := func(total int32) bool {
		_, frac := math.Modf(float64(total) * (float64(weight) / maxWeight))
		return frac == 0.5
	}
	zeroAllowed := weight == maxWeight || weight == 0 || (replicas == 1 && surge == 0)
	var options []option
	if ceil < replicas || zeroAllowed {
		options = append(options, option{ceil, replicas})
	}
	if !tied(replicas) && (floor != 0 || zeroAllowed) {
		options = append(options, option{floor, replicas})
	}
	if surge > 0 {
		options = append(options, option{ceil, replicas + 1})
		if !tied(replicas+1) && (floor != 0 || zeroAllowed) {
			options = append(options, option{floor, replicas + 1})
		}
	}
	if len(options) == 0 {
		return 0, replicas
	}
	delta := func(o option) float64 {
		return math.Abs(float64(o.canary*maxWeight)/float64(o.total) - float64(weight))
	}
	best := options[0]
	for _, o := range options[1:] {
		if delta(o) < delta(best) {
			best = o
		}
	}
	return best.canary, best.total - best.canary
}

// basicCanaryCounts are the next sizes of the canary (newRS) and stable
// sets of a canary without a traffic router on the way to weight, as
// Argo Rollouts' CalculateReplicaCountsForBasicCanary computes them: at
// most surge pods above spec.replicas, the stable set grown first; other
// sets (oldSpec pods) drained before anything else shrinks; then at most
// unavailable available pods below spec.replicas, taken from the side
// that shrinks. stable is nil when there is no stable set apart from the
// canary.
func basicCanaryCounts(replicas, weight, surge, unavailable int32, canaryRS replicaSetSize, stableRS *replicaSetSize, oldSpec int32) (canaryNext, stableNext int32) {
	desiredCanary, desiredStable := weightedCounts(replicas, weight, surge)
	canaryNext = canaryRS.spec
	if stableRS == nil {
		desiredCanary, desiredStable = replicas, 0
	} else {
		stableNext = stableRS.spec
	}
	maxTotal := replicas + surge
	total := oldSpec + canaryRS.spec
	if stableRS != nil {
		total += stableRS.spec
	}
	scaleUp := maxTotal - total
	if stableRS != nil && stableRS.spec < desiredStable && scaleUp > 0 {
		stableNext = min(stableRS.spec+scaleUp, desiredStable)
		scaleUp -= stableNext - stableRS.spec
	}
	if canaryRS.spec < desiredCanary && scaleUp > 0 {
		canaryNext = min(canaryRS.spec+scaleUp, desiredCanary)
	}
	if oldSpec > 0 {
		return canaryNext, stableNext
	}
	minAvailable := replicas - unavailable
	increasing := desiredCanary >= canaryRS.spec
	scaleDownable := func(rs *replicaSetSize, ignoreAvailability bool) int32 {
		switch {
		case rs == nil:
			return 0
		case rs.spec < rs.available:
			return rs.spec
		case ignoreAvailability:
			return rs.spec
		}
		return rs.available
	}
	toScaleDown := scaleDownable(&canaryRS, !increasing) + scaleDownable(stableRS, increasing)
	if toScaleDown <= minAvailable {
		return canaryNext, stableNext
	}
	scaleDown := toScaleDown - minAvailable
	drain := func(rs *replicaSetSize, desired, current int32) int32 {
		if rs != nil && rs.spec > desired {
			return max(desired, rs.spec-scaleDown)
		}
		return current
	}
	switch {
	case !increasing:
		canaryNext = drain(&canaryRS, desiredCanary, canaryNext)
		canaryNext, stableNext = withinLimits(&canaryRS, stableRS, canaryNext, stableNext, maxTotal, minAvailable)
	case stableRS != nil:
		stableNext = drain(stableRS, desiredStable, stableNext)
		stableNext, canaryNext = withinLimits(stableRS, &canaryRS, stableNext, canaryNext, maxTotal, minAvailable)
	}
	return canaryNext, stableNext
}

// withinLimits fits the set that grows (adjust) and the one that shrinks
// (drain) within maxTotal pods, giving back to adjust what keeps
// minAvailable available: Argo Rollouts' adjustReplicaWithinLimits.
func withinLimits(drainRS, adjustRS *replicaSetSize, drainCount, adjustCount, maxTotal, minAvailable int32) (int32, int32) {
	over := max(0, adjustCount+drainCount-maxTotal)
	available := int32(0)
	if drainRS != nil {
		available += min(drainRS.available, drainCount)
	}
	if adjustRS != nil {
		adjustCount -= over
		available += min(adjustRS.available, adjustCount)
		lost := max(0, adjustRS.available-adjustCount)
		adjustCount += min(lost, max(0, minAvailable-available))
		drainCount -= max(0, adjustCount+drainCount-maxTotal)
	}
	return drainCount, adjustCount
}
