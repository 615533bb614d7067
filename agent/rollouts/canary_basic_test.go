package rollouts

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// The vectors are Argo Rollouts' own (utils/replicaset/canary_test.go):
// what its basic canary scales to from the sets' spec and available
// replicas.
func TestBasicCanaryCountsAsArgoRollouts(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		replicas, weight            int32
		maxSurge, maxUnavailable    intstr.IntOrString
		promoteFull                 bool
		stableSpec, stableAvailable int32
		canarySpec, canaryAvailable int32
		wantStable, wantCanary      int32
	}{
		{"Do not add extra RSs in scaleDownCount when .Spec.Replica < AvailableReplicas", 10, 100, intstr.FromInt(3), intstr.FromInt(0), false, 7, 8, 6, 3, 7, 6},
		{"Use max surge int to scale up canary", 10, 20, intstr.FromInt(2), intstr.FromInt(0), false, 10, 10, 0, 0, 10, 2},
		{"Use max surge percentage to scale up canary", 10, 20, intstr.FromString("20%"), intstr.FromInt(0), false, 10, 10, 0, 0, 10, 2},
		{"Scale down extra stable replicas", 10, 20, intstr.FromString("20%"), intstr.FromInt(0), false, 10, 10, 2, 2, 8, 2},
		{"Do not go past max surge", 10, 30, intstr.FromInt(2), intstr.FromInt(0), false, 10, 10, 0, 0, 10, 2},
		{"Use max unavailable int to scale down stableRS", 10, 20, intstr.FromInt(0), intstr.FromInt(2), false, 10, 10, 0, 0, 8, 0},
		{"Use max surge percentage to scale down stableRS", 10, 20, intstr.FromInt(0), intstr.FromString("20%"), false, 10, 10, 0, 0, 8, 0},
		{"Do not go past max unavailable", 10, 30, intstr.FromInt(0), intstr.FromInt(2), false, 10, 10, 0, 0, 8, 0},
		{"Use Max Surge and Max Unavailable", 10, 50, intstr.FromInt(2), intstr.FromInt(1), false, 10, 10, 0, 0, 9, 2},
		{"Scale canaryRS to zero on setWeight of 0%", 10, 0, intstr.FromInt(1), intstr.FromInt(1), false, 10, 10, 1, 1, 10, 0},
		{"Scale stable to zero on setWeight of 100%", 10, 100, intstr.FromInt(1), intstr.FromInt(1), false, 1, 1, 10, 10, 0, 10},
		{"Do not scale canaryRS down to zero on non-zero weight", 1, 20, intstr.FromInt(1), intstr.FromInt(0), false, 1, 1, 0, 0, 1, 1},
		{"Do not scale canaryRS down to zero on non-100 weight", 1, 90, intstr.FromInt(1), intstr.FromInt(0), false, 1, 1, 0, 0, 1, 1},
		{"Scale canaryRS to zero on <50 weight without surge", 1, 49, intstr.FromInt(0), intstr.FromInt(1), false, 1, 1, 0, 0, 1, 0},
		{"Scale stableRS down to zero on >=50 weight without surge", 1, 51, intstr.FromInt(0), intstr.FromInt(1), false, 1, 1, 0, 0, 0, 0},
		{"Scale canaryRS to one on >=50 weight without surge and stable replicas", 1, 51, intstr.FromInt(0), intstr.FromInt(1), false, 0, 0, 0, 0, 0, 1},
		{"Scale down canaryRS and stable", 10, 30, intstr.FromInt(0), intstr.FromInt(3), false, 8, 5, 4, 4, 7, 3},
		{"Scale down stable and canary available", 10, 100, intstr.FromInt(1), intstr.FromInt(0), false, 10, 2, 10, 8, 2, 9},
		{"Do not round past maxSurge with uneven setWeight divisor", 10, 5, intstr.FromInt(0), intstr.FromInt(1), false, 10, 10, 0, 0, 9, 0},
		{"Do not round past maxSurge with uneven setWeight divisor (part 2)", 10, 5, intstr.FromInt(0), intstr.FromInt(1), false, 9, 9, 0, 0, 9, 1},
		{"Use maxUnavailable of 1 when percentage of maxUnavailable and maxSurge result in 0 replicas", 10, 10, intstr.FromString("0%"), intstr.FromString("0%"), false, 10, 10, 0, 0, 9, 0},
		{"honor maxSurge during scale up when stableRS unavailable", 4, 100, intstr.FromInt(1), intstr.FromInt(0), false, 4, 1, 0, 0, 4, 1},
		{"scale down to maxunavailable without exceeding maxSurge", 3, 99, intstr.FromInt(0), intstr.FromInt(2), false, 3, 3, 0, 0, 1, 0},
		{"scale down to maxunavailable without exceeding maxSurge (part 2)", 3, 99, intstr.FromInt(0), intstr.FromInt(2), false, 1, 1, 0, 0, 1, 2},
		{"honor maxUnavailable when aborting or reducing weight part 1", 4, 0, intstr.FromInt(1), intstr.FromInt(0), false, 0, 0, 4, 4, 1, 4},
		{"honor maxUnavailable when aborting or reducing weight part 2", 4, 0, intstr.FromInt(1), intstr.FromInt(0), false, 1, 0, 4, 4, 1, 4},
		{"honor maxUnavailable when aborting or reducing weight part 3", 4, 0, intstr.FromInt(1), intstr.FromInt(0), false, 1, 1, 4, 4, 1, 3},
		{"promote full does not consider weight", 4, 1, intstr.FromInt(4), intstr.FromInt(4), true, 4, 4, 0, 0, 0, 4},
		{"promote full still honors maxSurge/maxUnavailable", 4, 1, intstr.FromInt(3), intstr.FromInt(0), true, 4, 4, 0, 0, 4, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			surge, unavailable := fenceposts(&tc.maxSurge, &tc.maxUnavailable, tc.replicas)
			weight := tc.weight
			if tc.promoteFull {
				weight = 100
			}
			canary, stable := basicCanaryCounts(tc.replicas, weight, surge, unavailable,
				replicaSetSize{tc.canarySpec, tc.canaryAvailable}, &replicaSetSize{tc.stableSpec, tc.stableAvailable}, 0)
			if stable != tc.wantStable || canary != tc.wantCanary {
				t.Errorf("stable %d canary %d, want stable %d canary %d", stable, canary, tc.wantStable, tc.wantCanary)
			}
		})
	}
}

func TestWeightedCountsAsArgoRollouts(t *testing.T) {
	for _, tc := range []struct{ replicas, weight, surge, canary, stable int32 }{
		{1, 49, 0, 0, 1}, {1, 50, 0, 1, 0}, {1, 1, 1, 1, 1}, {2, 1, 0, 1, 1}, {2, 99, 1, 2, 1},
		{3, 50, 0, 2, 1}, {3, 10, 1, 1, 3}, {3, 49, 1, 2, 2}, {10, 14, 0, 1, 9}, {10, 15, 0, 2, 8},
		{10, 1, 1, 1, 10}, {10, 24, 1, 3, 8}, {10, 99, 1, 10, 1},
	} {
		if c, s := weightedCounts(tc.replicas, tc.weight, tc.surge); c != tc.canary || s != tc.stable {
			t.Errorf("%d replicas at %d%% (surge %d): canary %d stable %d, want %d and %d", tc.replicas, tc.weight, tc.surge, c, s, tc.canary, tc.stable)
		}
	}
}

func TestFencepostsAsArgoRollouts(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(n int) *intstr.IntOrString { v := intstr.FromInt(n); return &v }
	for _, tc := range []struct {
		surge, unavailable *intstr.IntOrString
		replicas           int32
		wantS, wantU       int32
	}{
		{nil, nil, 10, 3, 2},             // 25 % each: surge rounds up, unavailable down
		{pct("25"), pct("25"), 10, 3, 2}, // a string is a percentage with or without "%"
		{pct("0%"), pct("0%"), 10, 0, 1}, // both zero: one may be unavailable
		{num(0), num(0), 4, 0, 1},
		{pct("x"), nil, 10, 0, 0},    // does not parse: both zero, as Argo Rollouts
		{num(2), num(20), 10, 2, 10}, // unavailable is capped at spec.replicas
	} {
		if s, u := fenceposts(tc.surge, tc.unavailable, tc.replicas); s != tc.wantS || u != tc.wantU {
			t.Errorf("%v/%v of %d: surge %d unavailable %d, want %d and %d", tc.surge, tc.unavailable, tc.replicas, s, u, tc.wantS, tc.wantU)
		}
	}
}
