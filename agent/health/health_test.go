package health

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func deployment(generation, observed, replicas, available int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "api", "namespace": "production", "generation": generation},
		"spec":     map[string]any{"replicas": replicas},
		"status": map[string]any{"observedGeneration": observed, "replicas": replicas, "updatedReplicas": available,
			"readyReplicas": available, "availableReplicas": available,
			"conditions": []any{map[string]any{"type": "Available", "status": "True"}}},
	}}
}

func kind(apiVersion, kind string, spec, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": "x", "namespace": "prod"}}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

func TestOf(t *testing.T) {
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
		want flotillav1.HealthStatus
	}{
		{"missing", nil, flotillav1.HealthStatus_HEALTH_STATUS_MISSING},
		{"rolled out", deployment(2, 2, 3, 3), flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{"rolling", deployment(2, 2, 3, 1), flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING},
		{"spec not observed yet", deployment(3, 2, 3, 3), flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING},
		{"job running", kind("batch/v1", "Job", nil, map[string]any{"startTime": "2026-11-25T02:00:00Z", "active": int64(1)}), flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING},
		{"job complete", kind("batch/v1", "Job", nil, map[string]any{"conditions": []any{map[string]any{"type": "Complete", "status": "True"}}}), flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{"job failed", kind("batch/v1", "Job", nil, map[string]any{"conditions": []any{map[string]any{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}}}), flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED},
		{"paused deployment", kind("apps/v1", "Deployment", map[string]any{"paused": true}, nil), flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED},
		{"suspended cronjob", kind("batch/v1", "CronJob", map[string]any{"suspend": true}, nil), flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED},
		{"pvc pending", kind("v1", "PersistentVolumeClaim", nil, map[string]any{"phase": "Pending"}), flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING},
		{"pvc bound", kind("v1", "PersistentVolumeClaim", nil, map[string]any{"phase": "Bound"}), flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{"pvc lost", kind("v1", "PersistentVolumeClaim", nil, map[string]any{"phase": "Lost"}), flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED},
		{"lb service waiting", kind("v1", "Service", map[string]any{"type": "LoadBalancer"}, nil), flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING},
		{"lb service ready", kind("v1", "Service", map[string]any{"type": "LoadBalancer"}, map[string]any{"loadBalancer": map[string]any{"ingress": []any{map[string]any{"ip": "10.0.0.1"}}}}), flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{"cluster ip service", kind("v1", "Service", map[string]any{"type": "ClusterIP"}, nil), flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{"ingress waiting", kind("networking.k8s.io/v1", "Ingress", nil, nil), flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING},
		{"ingress ready", kind("networking.k8s.io/v1", "Ingress", nil, map[string]any{"loadBalancer": map[string]any{"ingress": []any{map[string]any{"hostname": "lb.example.com"}}}}), flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{"rollout not observed", kind("argoproj.io/v1alpha1", "Rollout", nil, map[string]any{"phase": "Healthy", "observedGeneration": "-1"}), flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING},
		{"rollout healthy", kind("argoproj.io/v1alpha1", "Rollout", nil, map[string]any{"phase": "Healthy", "observedGeneration": "0"}), flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{"rollout paused at a step", kind("argoproj.io/v1alpha1", "Rollout", nil, map[string]any{"phase": "Paused", "observedGeneration": "0"}), flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED},
		{"rollout aborted", kind("argoproj.io/v1alpha1", "Rollout", nil, map[string]any{"phase": "Degraded", "observedGeneration": "0"}), flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED},
		{"rollout paused by hand", kind("argoproj.io/v1alpha1", "Rollout", map[string]any{"paused": true}, map[string]any{"phase": "Progressing", "observedGeneration": "0"}), flotillav1.HealthStatus_HEALTH_STATUS_SUSPENDED},
		{"configmap", &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "c"}}}, flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, msg := Of(tc.obj); got != tc.want {
				t.Errorf("Of = %v (%s), want %v", got, msg, tc.want)
			}
		})
	}
}

func TestWorstFollowsArgoCDOrder(t *testing.T) {
	h, p, m, d := flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING,
		flotillav1.HealthStatus_HEALTH_STATUS_MISSING, flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED
	for _, tc := range []struct {
		in   []flotillav1.HealthStatus
		want flotillav1.HealthStatus
	}{
		{nil, h}, {[]flotillav1.HealthStatus{h, p}, p}, {[]flotillav1.HealthStatus{p, m, h}, m}, {[]flotillav1.HealthStatus{d, m, p}, d},
	} {
		if got := Worst(tc.in...); got != tc.want {
			t.Errorf("Worst(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
