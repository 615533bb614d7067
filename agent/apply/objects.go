package apply

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ObjectRef identifies an object.
type ObjectRef struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// RefOf returns the reference of an object.
func RefOf(obj *unstructured.Unstructured) ObjectRef {
	gvk := obj.GroupVersionKind()
	return ObjectRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// Refs returns the references of objects, in order.
func Refs(objs []*unstructured.Unstructured) []ObjectRef {
	out := make([]ObjectRef, len(objs))
	for i, o := range objs {
		out[i] = RefOf(o)
	}
	return out
}

// Object is an object with only the reference's identity set, for the
// verbs that take objects (Live, Diff).
func (r ObjectRef) Object() *unstructured.Unstructured {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind})
	obj.SetNamespace(r.Namespace)
	obj.SetName(r.Name)
	return obj
}

// Objects is Object of every reference, in order.
func Objects(refs []ObjectRef) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(refs))
	for i, r := range refs {
		out[i] = r.Object()
	}
	return out
}

// GroupKind is the reference's group and kind.
func (r ObjectRef) GroupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.Group, Kind: r.Kind}
}

// String is "Kind/namespace/name" (or "Kind/name" when cluster-scoped), with
// the group when there is one.
func (r ObjectRef) String() string {
	kind := r.Kind
	if r.Group != "" {
		kind = r.Kind + "." + r.Group
	}
	if r.Namespace == "" {
		return kind + "/" + r.Name
	}
	return kind + "/" + r.Namespace + "/" + r.Name
}

// Key identifies the object regardless of its API version.
func (r ObjectRef) Key() string {
	return r.Group + "/" + r.Kind + "/" + r.Namespace + "/" + r.Name
}

// ByKey indexes objects by ObjectRef.Key.
func ByKey(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	out := make(map[string]*unstructured.Unstructured, len(objs))
	for _, o := range objs {
		out[RefOf(o).Key()] = o
	}
	return out
}

// bookkeeping are the metadata fields the API server sets: they differ
// between a live object and its dry-run without meaning anything, and Git
// never sets them.
var bookkeeping = []string{"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp"}

// lastAppliedAnnotation is kubectl's copy of what it applied last: noise in
// any comparison with Git.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// Comparable is a copy of obj without what the server keeps for itself (the
// bookkeeping metadata, kubectl's last-applied annotation) and without its
// status, which is the controllers' and moves between a read and a dry-run:
// what is left is what Git can set. A nil obj gives nil. Every comparison of
// live with desired (the no-op check, drift, diffs) uses it.
func Comparable(obj *unstructured.Unstructured) *unstructured.Unstructured {
	if obj == nil {
		return nil
	}
	c := obj.DeepCopy()
	delete(c.Object, "status")
	for _, f := range bookkeeping {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(c.Object, "metadata", "annotations", lastAppliedAnnotation)
	if a, found, _ := unstructured.NestedMap(c.Object, "metadata", "annotations"); found && len(a) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	}
	return c
}
