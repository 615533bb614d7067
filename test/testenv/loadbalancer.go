package testenv

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// loadBalancerAddress is the address the test clusters' load balancer
// gives: nothing is sent to it, it only makes the objects look provisioned.
const loadBalancerAddress = "127.0.0.1"

// provideLoadBalancers gives every LoadBalancer Service and every Ingress
// of the cluster an address, the way a cloud's load balancer controller
// does, until ctx ends: without one Argo CD's health (and the agent's)
// keeps them Progressing for ever, and so the applications they belong to.
func provideLoadBalancers(ctx context.Context, client kubernetes.Interface) error {
	factory := informers.NewSharedInformerFactory(client, 0)
	services := factory.Core().V1().Services().Informer()
	ingresses := factory.Networking().V1().Ingresses().Informer()
	status := []corev1.LoadBalancerIngress{{IP: loadBalancerAddress}}
	onService := func(obj any) {
		svc, ok := obj.(*corev1.Service)
		if !ok || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) > 0 {
			return
		}
		svc = svc.DeepCopy()
		svc.Status.LoadBalancer.Ingress = status
		_, _ = client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{FieldManager: "testenv-load-balancer"})
	}
	onIngress := func(obj any) {
		ing, ok := obj.(*networkingv1.Ingress)
		if !ok || len(ing.Status.LoadBalancer.Ingress) > 0 {
			return
		}
		ing = ing.DeepCopy()
		ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: loadBalancerAddress}}
		_, _ = client.NetworkingV1().Ingresses(ing.Namespace).UpdateStatus(ctx, ing, metav1.UpdateOptions{FieldManager: "testenv-load-balancer"})
	}
	for _, h := range []struct {
		informer cache.SharedIndexInformer
		on       func(any)
	}{{services, onService}, {ingresses, onIngress}} {
		if _, err := h.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    h.on,
			UpdateFunc: func(_, obj any) { h.on(obj) },
		}); err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	return nil
}
