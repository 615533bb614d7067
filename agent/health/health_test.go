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
