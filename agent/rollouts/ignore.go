package rollouts

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// ControllerFields are the fields of objs that the rollouts controller
// sets and Git does not: the pod-template-hash key of each Service a
// Rollout among objs names, the backend weights of its HTTPRoute, and the
// replicas of a workloadRef Deployment it scales down. A sync leaves them
// as they are live, and drift ignores them, as Argo CD users configure
// for Argo Rollouts by hand.
func ControllerFields(objs []*unstructured.Unstructured) []*flotillav1.IgnoreDifferences {
	var out []*flotillav1.IgnoreDifferences
	for _, obj := range objs {
		if !IsRollout(obj) {
			continue
		}
		ro, _ := parse(obj)
		if ro == nil {
			continue
		}
		var services []string
		if c := ro.Spec.Strategy.Canary; c != nil {
			services = append(services, c.CanaryService, c.StableService)
			if route, _ := c.gatewayRoute(); route != nil {
				ns := route.Namespace
				if ns == "" {
					ns = obj.GetNamespace()
				}
				out = append(out, &flotillav1.IgnoreDifferences{Group: httpRoutes.Group, Kind: "HTTPRoute", Name: route.HTTPRoute, Namespace: ns,
					JqPathExpressions: []string{".spec.rules[]?.backendRefs[]?.weight"}})
			}
		}
		if ref := ro.Spec.WorkloadRef; ref != nil && (ref.ScaleDown == scaleDownOnSuccess || ref.ScaleDown == scaleDownProgressively) {
			out = append(out, &flotillav1.IgnoreDifferences{Group: "apps", Kind: "Deployment", Name: ref.Name, Namespace: obj.GetNamespace(),
				JsonPointers: []string{"/spec/replicas"}})
		}
		if bg := ro.Spec.Strategy.BlueGreen; bg != nil {
			services = append(services, bg.ActiveService, bg.PreviewService)
		}
		for _, svc := range services {
			if svc != "" {
				out = append(out, &flotillav1.IgnoreDifferences{Kind: "Service", Name: svc, Namespace: obj.GetNamespace(),
					JsonPointers: []string{"/spec/selector/" + HashLabel}})
			}
		}
	}
	return out
}
