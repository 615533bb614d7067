package rollouts

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var ingresses = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}

// NginxRouting is trafficRouting.nginx: ingress-nginx sends the canary its
// share through a canary Ingress, a copy of each stable Ingress that the
// controller owns and weights with ingress-nginx's canary annotations.
type NginxRouting struct {
	StableIngress    string   `json:"stableIngress,omitempty"`
	StableIngresses  []string `json:"stableIngresses,omitempty"`
	AnnotationPrefix string   `json:"annotationPrefix,omitempty"`
	// AdditionalIngressAnnotations are set under the prefix
	// (canary-by-header: X-Canary is <prefix>/canary-by-header).
	AdditionalIngressAnnotations map[string]string `json:"additionalIngressAnnotations,omitempty"`
	// CanaryIngressAnnotations are set as they are.
	CanaryIngressAnnotations map[string]string `json:"canaryIngressAnnotations,omitempty"`
}

func (n *NginxRouting) ingresses() []string {
	if n.StableIngress == "" {
		return n.StableIngresses
	}
	return append([]string{n.StableIngress}, n.StableIngresses...)
}

func (n *NginxRouting) prefix() string {
	if n.AnnotationPrefix == "" {
		return "nginx.ingress.kubernetes.io"
	}
	return n.AnnotationPrefix
}

// setWeight writes each stable Ingress' canary Ingress with the weight,
// as Argo Rollouts' nginx router does; an unchanged one is not written.
func (n *NginxRouting) setWeight(ctx context.Context, r *rolloutCtx, c *Canary, weight int32) error {
	ri := r.c.client.Resource(ingresses).Namespace(r.obj.GetNamespace())
	for _, name := range n.ingresses() {
		obj, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("stable Ingress %s: %w", name, err)
		}
		var stable networkingv1.Ingress
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &stable); err != nil {
			return fmt.Errorf("stable Ingress %s: %w", name, err)
		}
		want, err := n.canaryIngress(r, c, &stable, weight)
		if err != nil {
			return err
		}
		live, err := ri.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			m, err := toMap(want)
			if err != nil {
				return err
			}
			if _, err := ri.Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
				return fmt.Errorf("canary Ingress %s: %w", want.Name, err)
			}
			continue
		case err != nil:
			return fmt.Errorf("canary Ingress %s: %w", want.Name, err)
		}
		var current networkingv1.Ingress
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, &current); err != nil {
			return fmt.Errorf("canary Ingress %s: %w", want.Name, err)
		}
		if apiequality.Semantic.DeepEqual(current.Spec, want.Spec) && apiequality.Semantic.DeepEqual(current.Annotations, want.Annotations) {
			continue
		}
		current.Spec, current.Annotations = want.Spec, want.Annotations
		m, err := toMap(&current)
		if err != nil {
			return err
		}
		if _, err := ri.Update(ctx, &unstructured.Unstructured{Object: m}, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
			return fmt.Errorf("canary Ingress %s: %w", want.Name, err)
		}
	}
	return nil
}

// canaryIngress is stable's canary: named <rollout>-<ingress>-canary, owned
// by the rollout, with the rules that send to the stable Service sending
// to the canary Service instead (others left out, as is TLS), the ingress
// class kept, and the canary annotations.
func (n *NginxRouting) canaryIngress(r *rolloutCtx, c *Canary, stable *networkingv1.Ingress, weight int32) (*networkingv1.Ingress, error) {
	out := &networkingv1.Ingress{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{
			Name: canaryIngressName(r.obj.GetName(), stable.Name), Namespace: stable.Namespace,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(r.obj, GVR.GroupVersion().WithKind("Rollout"))},
			Annotations:     map[string]string{},
		},
		Spec: networkingv1.IngressSpec{IngressClassName: stable.Spec.IngressClassName},
	}
	for _, rule := range stable.Spec.Rules {
		rule := *rule.DeepCopy()
		routed := false
		if rule.HTTP != nil {
			for i, path := range rule.HTTP.Paths {
				if path.Backend.Service != nil && path.Backend.Service.Name == c.StableService {
					rule.HTTP.Paths[i].Backend.Service.Name = c.CanaryService
					routed = true
				}
			}
		}
		if routed {
			out.Spec.Rules = append(out.Spec.Rules, rule)
		}
	}
	if len(out.Spec.Rules) == 0 {
		return nil, fmt.Errorf("stable Ingress %s has no rule sending to stableService %s", stable.Name, c.StableService)
	}
	// ingress-nginx needs the class on the canary too.
	if class, ok := stable.Annotations["kubernetes.io/ingress.class"]; ok {
		out.Annotations["kubernetes.io/ingress.class"] = class
	}
	prefix := n.prefix()
	for k, v := range n.AdditionalIngressAnnotations {
		out.Annotations[prefix+"/"+k] = v
	}
	maps.Copy(out.Annotations, n.CanaryIngressAnnotations)
	out.Annotations[prefix+"/canary"] = "true"
	out.Annotations[prefix+"/canary-weight"] = strconv.Itoa(int(weight))
	return out, nil
}

// canaryIngressName is Argo Rollouts': <rollout>-<ingress>-canary, cut to
// an object name's 253 characters.
func canaryIngressName(rollout, ingress string) string {
	const suffix = "-canary"
	name := rollout + "-" + ingress
	if len(name) > 253-len(suffix) {
		name = name[:253-len(suffix)]
	}
	return name + suffix
}
