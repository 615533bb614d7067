package main

import (
	"context"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

// The simulated users' error ratios: every api-service version fails 0.2 %
// of requests, except 1.4.3, the user story's bad release.
const (
	goodErrorRatio = 0.002
	badErrorRatio  = 0.05
	badRelease     = ":1.4.3"
)

var rollouts = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// simulateUsers sends api-service's canary track traffic while production
// runs a canary (kwok's pods serve nothing), at the error ratio of the
// version the canary runs, until ctx ends.
func simulateUsers(ctx context.Context, prod *testenv.Cluster, traffic *testenv.Traffic) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		ro, err := prod.Dynamic.Resource(rollouts).Namespace("production").Get(ctx, "api-service", metav1.GetOptions{})
		if err != nil {
			continue
		}
		current, _, _ := unstructured.NestedString(ro.Object, "status", "currentPodHash")
		stable, _, _ := unstructured.NestedString(ro.Object, "status", "stableRS")
		aborted, _, _ := unstructured.NestedBool(ro.Object, "status", "abort")
		if current == "" || current == stable || aborted {
			traffic.End("api-service", "canary")
			continue
		}
		ratio := goodErrorRatio
		if containers, _, _ := unstructured.NestedSlice(ro.Object, "spec", "template", "spec", "containers"); len(containers) > 0 {
			if c, _ := containers[0].(map[string]any); c != nil {
				if image, _ := c["image"].(string); strings.HasSuffix(image, badRelease) {
					ratio = badErrorRatio
				}
			}
		}
		traffic.Serve("api-service", "canary", ratio)
	}
}
