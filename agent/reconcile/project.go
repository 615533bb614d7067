package reconcile

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/internal/appspec"
)

// refuseForbidden fails a sync with objects its AppProject does not
// permit, naming the project, the rule and each object, before anything
// is written: the kinds of its resource lists (by the scope the cluster
// gives each kind, or a CRD of the same render), and for namespaced
// objects the namespaces of its destinations. The hub checked the rest.
func (s *Syncer) refuseForbidden(spec syncSpec, objs []*unstructured.Unstructured) error {
	policy := spec.ds.GetProjectPolicy()
	if policy == nil {
		return nil
	}
	project := appspec.ProjectFromPolicy(policy)
	scopes := crdScopes(objs)
	var refused []error
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		namespaced := o.GetNamespace() != ""
		if scope, ok := scopes[gvk.GroupKind().String()]; ok {
			namespaced = scope == "Namespaced"
		}
		ref := apply.RefOf(o)
		if ok, list := project.ResourcePermitted(gvk.Group, gvk.Kind, o.GetName(), namespaced); !ok {
			refused = append(refused, &apply.ObjectError{Ref: ref, Action: "sync", Err: fmt.Errorf("AppProject %q does not permit it (spec.%s)", policy.GetName(), list)})
			continue
		}
		if namespaced && !project.DestinationPermitted(spec.ds.GetDestination().GetServer(), spec.cluster, o.GetNamespace()) {
			refused = append(refused, &apply.ObjectError{Ref: ref, Action: "sync", Err: fmt.Errorf("AppProject %q does not permit namespace %q in cluster %s (spec.destinations)", policy.GetName(), o.GetNamespace(), spec.cluster)})
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("nothing was applied: %w", joinSemicolon(refused))
	}
	return nil
}

// crdScopes are the scopes the CustomResourceDefinitions among objs give
// their kinds, by "Kind.group".
func crdScopes(objs []*unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" || o.GroupVersionKind().Group != "apiextensions.k8s.io" {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		if kind != "" {
			out[kind+"."+group] = scope
		}
	}
	return out
}
