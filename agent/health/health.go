package health

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Of maps one live object's kstatus to an Argo CD health state.
func Of(obj *unstructured.Unstructured) (flotillav1.HealthStatus, string) {
	if obj == nil {
		return flotillav1.HealthStatus_HEALTH_STATUS_MISSING, "object does not exist"
	}
	res, err := status.Compute(obj)
	if err != nil {
		return flotillav1.HealthStatus_HEALTH_STATUS_UNKNOWN, err.Error()
	}
	switch res.Status {
	case status.CurrentStatus:
		return flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, res.Message
	case status.InProgressStatus, status.TerminatingStatus:
		return flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING, res.Message
	case status.FailedStatus:
		return flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED, res.Message
	case status.NotFoundStatus:
		return flotillav1.HealthStatus_HEALTH_STATUS_MISSING, res.Message
	}
	return flotillav1.HealthStatus_HEALTH_STATUS_UNKNOWN, res.Message
}

// rank orders health states from best to worst, as Argo CD aggregates them.
var rank = map[flotillav1.HealthStatus]int{
	flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY:     0,
	flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED:   1,
	flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING: 2,
	flotillav1.HealthStatus_HEALTH_STATUS_UNKNOWN:     3,
	flotillav1.HealthStatus_HEALTH_STATUS_MISSING:     4,
	flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED:    5,
}

// Worst returns the worst of the states (Healthy for none).
func Worst(states ...flotillav1.HealthStatus) flotillav1.HealthStatus {
	worst := flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY
	for _, s := range states {
		if rank[s] > rank[worst] {
			worst = s
		}
	}
	return worst
}

// Getter reads an object's live state (nil when it does not exist).
type Getter func(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error)

// Result is the health of each object, in order, and of them all.
type Result struct {
	Objects []flotillav1.HealthStatus
	Message []string
	Overall flotillav1.HealthStatus
}

// Check reads every object once and computes health.
func Check(ctx context.Context, get Getter, objs []*unstructured.Unstructured) (*Result, error) {
	res := &Result{Objects: make([]flotillav1.HealthStatus, len(objs)), Message: make([]string, len(objs))}
	for i, obj := range objs {
		live, err := get(ctx, obj)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		if apierrors.IsNotFound(err) {
			live = nil
		}
		res.Objects[i], res.Message[i] = Of(live)
	}
	res.Overall = Worst(res.Objects...)
	return res, nil
}

// Wait polls until every object is healthy or timeout passes, then returns
// the last result and, on timeout, an error naming each object that is not
// healthy.
func Wait(ctx context.Context, get Getter, objs []*unstructured.Unstructured, timeout time.Duration) (*Result, error) {
	var last *Result
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		res, err := Check(ctx, get, objs)
		if err != nil {
			return false, nil // the API server may be restarting; keep trying
		}
		last = res
		return res.Overall == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, nil
	})
	if err == nil {
		return last, nil
	}
	if last == nil {
		return nil, fmt.Errorf("health check: %w", err)
	}
	var pending []string
	for i, obj := range objs {
		if last.Objects[i] != flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY {
			pending = append(pending, fmt.Sprintf("%s/%s %s: %s", obj.GetKind(), obj.GetName(), strings.TrimPrefix(last.Objects[i].String(), "HEALTH_STATUS_"), last.Message[i]))
		}
	}
	return last, fmt.Errorf("not healthy after %s: %s", timeout, strings.Join(pending, "; "))
}
