package health

import (
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Of is one live object's health: Argo CD's own rule where kstatus
// differs from it (argoHealth), else kstatus mapped onto Argo CD's states.
func Of(obj *unstructured.Unstructured) (flotillav1.HealthStatus, string) {
	if obj == nil {
		return flotillav1.HealthStatus_HEALTH_STATUS_MISSING, "object does not exist"
	}
	if h, msg, ok := argoHealth(obj); ok {
		return h, msg
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

// Result is the health of each object, in order, and of them all.
type Result struct {
	Objects []flotillav1.HealthStatus
	Message []string
	Overall flotillav1.HealthStatus
}

// Check computes the health of objs from their live state, looked up by
// live (nil when the object does not exist).
func Check(objs []*unstructured.Unstructured, live func(*unstructured.Unstructured) *unstructured.Unstructured) *Result {
	res := &Result{Objects: make([]flotillav1.HealthStatus, len(objs)), Message: make([]string, len(objs))}
	for i, obj := range objs {
		res.Objects[i], res.Message[i] = Of(live(obj))
	}
	res.Overall = Worst(res.Objects...)
	return res
}

// argoHealth is Argo CD's built-in health where kstatus answers
// differently: a Rollout by its phase, a running Job is Progressing (kstatus: Current once
// started), a paused Deployment or a suspended CronJob is Suspended, a
// PersistentVolumeClaim is Healthy only when Bound, a LoadBalancer Service
// and an Ingress only once their load balancer has an address.
func argoHealth(obj *unstructured.Unstructured) (flotillav1.HealthStatus, string, bool) {
	gk := obj.GroupVersionKind().GroupKind()
	switch {
	case gk.Group == "batch" && gk.Kind == "Job":
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["status"] != "True" {
				continue
			}
			msg, _ := m["message"].(string)
			switch m["type"] {
			case "Complete":
				return flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, "job completed", true
			case "Failed":
				reason, _ := m["reason"].(string)
				return flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED, strings.TrimSpace("job failed: " + reason + " " + msg), true
			}
		}
		if suspend, _, _ := unstructured.NestedBool(obj.Object, "spec", "suspend"); suspend {
			return flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED, "job is suspended", true
		}
		return flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING, "job is running", true
	case gk.Group == "batch" && gk.Kind == "CronJob":
		if suspend, _, _ := unstructured.NestedBool(obj.Object, "spec", "suspend"); suspend {
			return flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED, "cronjob is suspended", true
		}
	case gk.Group == "apps" && gk.Kind == "Deployment":
		if paused, _, _ := unstructured.NestedBool(obj.Object, "spec", "paused"); paused {
			return flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED, "deployment is paused", true
		}
	case gk.Group == "" && gk.Kind == "Service":
		if t, _, _ := unstructured.NestedString(obj.Object, "spec", "type"); t == "LoadBalancer" {
			return loadBalanced(obj, "service")
		}
		return flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, "", true
	case gk.Group == "networking.k8s.io" && gk.Kind == "Ingress":
		return loadBalanced(obj, "ingress")
	case gk.Group == "argoproj.io" && gk.Kind == "Rollout":
		return rolloutHealth(obj)
	case gk.Group == "" && gk.Kind == "PersistentVolumeClaim":
		switch phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase"); phase {
		case "Bound":
			return flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, "claim is bound", true
		case "Lost":
			return flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED, "claim lost its volume", true
		default:
			return flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING, "claim is pending", true
		}
	}
	return 0, "", false
}

// rolloutHealth is Argo CD's health of an Argo Rollouts Rollout: its
// status.phase once the controller observed the current spec, with
// Paused shown as Suspended.
func rolloutHealth(obj *unstructured.Unstructured) (flotillav1.HealthStatus, string, bool) {
	observed, _, _ := unstructured.NestedString(obj.Object, "status", "observedGeneration")
	if observed != strconv.FormatInt(obj.GetGeneration(), 10) {
		return flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING, "waiting for the rollout spec update to be observed", true
	}
	if paused, _, _ := unstructured.NestedBool(obj.Object, "spec", "paused"); paused {
		return flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED, "rollout is paused", true
	}
	phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
	msg, _, _ := unstructured.NestedString(obj.Object, "status", "message")
	switch phase {
	case "Healthy":
		return flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, msg, true
	case "Paused":
		return flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED, msg, true
	case "Degraded":
		return flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED, msg, true
	}
	if msg == "" {
		msg = "waiting for the rollout to finish"
	}
	return flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING, msg, true
}

// loadBalanced is Healthy once status.loadBalancer.ingress has an entry.
func loadBalanced(obj *unstructured.Unstructured, what string) (flotillav1.HealthStatus, string, bool) {
	if lb, _, _ := unstructured.NestedSlice(obj.Object, "status", "loadBalancer", "ingress"); len(lb) > 0 {
		return flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, "", true
	}
	return flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING, what + " waits for a load balancer address", true
}

// Name is a health state as Argo CD writes it: "Progressing".
func Name(h flotillav1.HealthStatus) string {
	word := strings.ToLower(strings.TrimPrefix(h.String(), "HEALTH_STATUS_"))
	if word == "" {
		return ""
	}
	return strings.ToUpper(word[:1]) + word[1:]
}
