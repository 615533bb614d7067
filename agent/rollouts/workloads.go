package rollouts

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// watchWorkloads follows Deployments' generations (keeping nothing else of
// them in memory) and requeues the Rollouts whose workloadRef names one
// that changed.
func (c *Controller) watchWorkloads(ctx context.Context) error {
	factory := dynamicinformer.NewDynamicSharedInformerFactory(c.client, c.opts.Resync)
	informer := factory.ForResource(deployGVR).Informer()
	if err := informer.SetTransform(func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil
		}
		slim := &unstructured.Unstructured{}
		slim.SetAPIVersion(u.GetAPIVersion())
		slim.SetKind(u.GetKind())
		slim.SetNamespace(u.GetNamespace())
		slim.SetName(u.GetName())
		slim.SetResourceVersion(u.GetResourceVersion())
		slim.SetGeneration(u.GetGeneration())
		return slim, nil
	}); err != nil {
		return err
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) {
			o, _ := old.(metav1.Object)
			n, _ := obj.(metav1.Object)
			if o == nil || n == nil || o.GetGeneration() == n.GetGeneration() {
				return
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			for key := range c.workloads[cache.ObjectName{Namespace: n.GetNamespace(), Name: n.GetName()}] {
				c.queue.Add(key)
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	return nil
}

// referWorkload notes that the rollout key takes its template from the
// Deployment named (or from none: ""); the first one named has Run watch
// Deployments from then on.
func (c *Controller) referWorkload(key cache.ObjectName, deployment string) {
	if deployment != "" {
		c.nameWorkload.Do(func() { close(c.workloadNamed) })
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ref, rollouts := range c.workloads {
		if ref.Name != deployment || ref.Namespace != key.Namespace {
			delete(rollouts, key)
			if len(rollouts) == 0 {
				delete(c.workloads, ref)
			}
		}
	}
	if deployment == "" {
		return
	}
	ref := cache.ObjectName{Namespace: key.Namespace, Name: deployment}
	if c.workloads[ref] == nil {
		c.workloads[ref] = map[cache.ObjectName]bool{}
	}
	c.workloads[ref][key] = true
}
