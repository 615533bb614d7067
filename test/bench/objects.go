package bench

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ThousandObjects is the apply benchmark's application: 333 ConfigMaps,
// 333 headless Services and 334 Deployments in one namespace, the mix the
// peer measurements in ARCHITECTURE.md used. Headless, because envtest's
// service CIDR is a /24.
func ThousandObjects(namespace string) []*unstructured.Unstructured {
	var objs []*unstructured.Unstructured
	for i := range 1000 {
		name := fmt.Sprintf("obj-%04d", i)
		var o map[string]any
		switch i % 3 {
		case 0:
			o = map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": name, "namespace": namespace},
				"data": map[string]any{"key": strings.Repeat("v", 64)}}
		case 1:
			o = map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": name, "namespace": namespace},
				"spec": map[string]any{"clusterIP": "None", "selector": map[string]any{"app": name}, "ports": []any{map[string]any{"name": "http", "port": int64(80)}}}}
		default:
			labels := map[string]any{"app": name}
			o = map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": name, "namespace": namespace},
				"spec": map[string]any{"replicas": int64(1), "selector": map[string]any{"matchLabels": labels},
					"template": map[string]any{"metadata": map[string]any{"labels": labels},
						"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "registry.example.com/app:1"}}}}}}
		}
		objs = append(objs, &unstructured.Unstructured{Object: o})
	}
	return objs
}

// NamespaceObject is a Namespace to apply first.
func NamespaceObject(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
}
