package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// plan is one object on its way through a sync.
type plan struct {
	obj    *unstructured.Unstructured
	change Change
	// write is false when the dry-run showed the live object already
	// matches.
	write bool
	// written is set once the write succeeded.
	written bool
	// replace writes the object whole (create or update), as Argo CD's
	// Replace=true, instead of server-side apply; live is what it replaces.
	replace bool
	live    *unstructured.Unstructured
	// skipDryRunIfMissing applies the object without a dry-run when its
	// kind is not known to the cluster, as Argo CD's
	// SkipDryRunOnMissingResource=true does.
	skipDryRunIfMissing bool
}

// Option changes how ApplyAll writes.
type Option func(*plan)

// Replace makes ApplyAll create or update (replace whole) the objects for
// which replace is true, as Argo CD's Replace=true sync option does,
// instead of server-side applying them: fields Git does not set are
// removed, whoever set them.
func Replace(replace func(*unstructured.Unstructured) bool) Option {
	return func(p *plan) { p.replace = replace(p.obj) }
}

// SkipDryRunOnMissingResource makes ApplyAll apply the objects for which
// skip is true without a dry-run when the cluster does not know their
// kind (its CustomResourceDefinition comes from elsewhere, later): they
// neither hold up the others' dry-run nor are checked by it, and are
// applied last.
func SkipDryRunOnMissingResource(skip func(*unstructured.Unstructured) bool) Option {
	return func(p *plan) { p.skipDryRunIfMissing = skip(p.obj) }
}

// ApplyAll applies objects with server-side apply. First every object is
// dry-run on the server; if any fails, nothing is written and the error
// names each failing object (each an *ObjectError, joined). CRDs and Namespaces are
// applied first, and CRDs waited for, so objects of their kinds can follow
// in the same set. Objects that already match are not written.
func (m *Manager) ApplyAll(ctx context.Context, objs []*unstructured.Unstructured, opts ...Option) (*ChangeSet, error) {
	var all, first, rest []*plan
	for _, obj := range objs {
		p := &plan{obj: obj, change: Change{Ref: RefOf(obj)}}
		all = append(all, p)
		for _, o := range opts {
			o(p)
		}
		if isClusterDefinition(obj) {
			first = append(first, p)
		} else {
			rest = append(rest, p)
		}
	}
	defined := map[schema.GroupKind]bool{}
	namespaces := map[string]bool{}
	for _, p := range first {
		if gk, ok := crdDefines(p.obj); ok {
			defined[gk] = true
		}
		if p.obj.GetKind() == "Namespace" {
			namespaces[p.obj.GetName()] = true
		}
	}
	// Objects whose kind a CRD of this set defines, or whose namespace a
	// Namespace of this set creates, cannot be dry-run before those exist;
	// they are dry-run once they do.
	var now, later, unchecked []*plan
	exists := map[string]bool{}
	for ns := range namespaces {
		exists[ns] = m.namespaceExists(ctx, ns)
	}
	for _, p := range rest {
		if namespaces[p.obj.GetNamespace()] && !exists[p.obj.GetNamespace()] {
			later = append(later, p)
			continue
		}
		if defined[p.change.Ref.GroupKind()] {
			if _, err := m.resource(p.obj.GroupVersionKind()); err != nil {
				later = append(later, p)
				continue
			}
		}
		if p.skipDryRunIfMissing {
			if _, err := m.resource(p.obj.GroupVersionKind()); err != nil {
				p.write, p.change.Action = true, Created // an object of a kind the cluster lacks cannot exist yet
				unchecked = append(unchecked, p)
				continue
			}
		}
		now = append(now, p)
	}
	cs := &ChangeSet{}
	if err := m.dryRun(ctx, append(append([]*plan{}, first...), now...)); err != nil {
		return collect(cs, all), err
	}
	if err := m.write(ctx, first); err != nil {
		return collect(cs, all), err
	}
	if err := m.waitEstablished(ctx, first); err != nil {
		return collect(cs, all), err
	}
	if len(later) > 0 {
		if err := m.dryRun(ctx, later); err != nil {
			return collect(cs, all), err
		}
	}
	if err := m.write(ctx, append(now, later...)); err != nil {
		return collect(cs, all), err
	}
	err := m.write(ctx, unchecked)
	return collect(cs, all), err
}

// collect puts every plan's change into cs, in the order of the objects
// given. One the sync stopped before writing (another object failed) is
// failed too: a change set never reports a write that did not happen.
func collect(cs *ChangeSet, plans []*plan) *ChangeSet {
	for _, p := range plans {
		if p.change.Action != Failed && p.change.Action != Unchanged && !p.written {
			p.change.Action, p.change.Message = Failed, "not applied: another object of the set failed"
		}
		cs.Append(p.change)
	}
	return cs
}

// dryRun asks the server what applying each object would do. The live
// objects are read with one LIST per kind and namespace, not one GET each.
func (m *Manager) dryRun(ctx context.Context, plans []*plan) error {
	objs := make([]*unstructured.Unstructured, len(plans))
	for i, p := range plans {
		objs[i] = p.obj
	}
	live, err := m.Live(ctx, objs)
	if err != nil {
		return err
	}
	errs := make([]error, len(plans))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Concurrency)
	for i, p := range plans {
		g.Go(func() error {
			errs[i] = m.dryRunOne(ctx, p, live[p.change.Ref.Key()])
			if errs[i] != nil {
				p.change.Action, p.change.Message = Failed, errs[i].Error()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

func (m *Manager) dryRunOne(ctx context.Context, p *plan, live *unstructured.Unstructured) error {
	ri, _, err := m.client(p.obj)
	if err != nil {
		return &ObjectError{Ref: p.change.Ref, Action: "dry-run", Err: err}
	}
	p.live = live
	var dry *unstructured.Unstructured
	switch {
	case p.replace && live == nil:
		dry, err = ri.Create(ctx, p.obj, metav1.CreateOptions{FieldManager: FieldManager, DryRun: []string{metav1.DryRunAll}})
	case p.replace:
		dry, err = ri.Update(ctx, replacement(p.obj, live), metav1.UpdateOptions{FieldManager: FieldManager, DryRun: []string{metav1.DryRunAll}})
	default:
		dry, err = ri.Apply(ctx, p.obj.GetName(), p.obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
	}
	if err != nil {
		return &ObjectError{Ref: p.change.Ref, Action: "dry-run", Err: err}
	}
	switch {
	case live == nil:
		p.change.Action, p.write = Created, true
	case sameObject(live, dry):
		p.change.Action, p.write = Unchanged, false
	default:
		p.change.Action, p.write = Configured, true
	}
	return nil
}

// Live reads the live state of objects, keyed by ObjectRef.Key; objects
// that do not exist are absent and kinds the server does not know are
// skipped. A kind and namespace with many objects is read with one LIST,
// one with a few (a drift check) with a GET each, so a check of one object
// in a namespace of thousands reads one object. Any other failure, to
// read or to find a kind's resource, is an error: an object Live could
// not read is never taken for one that does not exist.
func (m *Manager) Live(ctx context.Context, objs []*unstructured.Unstructured) (map[string]*unstructured.Unstructured, error) {
	type scope struct {
		gvr       schema.GroupVersionResource
		namespace string
	}
	scopes := map[scope][]*unstructured.Unstructured{}
	for _, obj := range objs {
		mapping, err := m.resource(obj.GroupVersionKind())
		if meta.IsNoMatchError(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", RefOf(obj), err)
		}
		ns := ""
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ns = obj.GetNamespace()
		}
		s := scope{mapping.Resource, ns}
		scopes[s] = append(scopes[s], obj)
	}
	live := map[string]*unstructured.Unstructured{}
	for s, members := range scopes {
		var ri dynamic.ResourceInterface = m.dynamic.Resource(s.gvr)
		if s.namespace != "" {
			ri = m.dynamic.Resource(s.gvr).Namespace(s.namespace)
		}
		if len(members) <= fewObjects {
			for _, obj := range members {
				o, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("get %s %s/%s: %w", s.gvr.Resource, s.namespace, obj.GetName(), err)
				}
				live[RefOf(o).Key()] = o
			}
			continue
		}
		list, err := ri.List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue // the namespace does not exist yet
		}
		if err != nil {
			return nil, fmt.Errorf("list %s in %q: %w", s.gvr.Resource, s.namespace, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			live[RefOf(o).Key()] = o
		}
	}
	return live, nil
}

// fewObjects is the most objects of one kind and namespace Live reads
// with GETs rather than a LIST.
const fewObjects = 8

// sameObject compares a live object with the dry-run result, ignoring the
// bookkeeping that differs between the two.
func sameObject(live, dry *unstructured.Unstructured) bool {
	return equality.Semantic.DeepEqual(Comparable(live), Comparable(dry))
}

// replacement is obj as a whole-object update of live: live's resource
// version (an update is refused if live changed meanwhile) and its status.
func replacement(obj, live *unstructured.Unstructured) *unstructured.Unstructured {
	c := obj.DeepCopy()
	c.SetResourceVersion(live.GetResourceVersion())
	if status, ok := live.Object["status"]; ok {
		c.Object["status"] = status
	}
	return c
}

// write applies the plans that need it.
func (m *Manager) write(ctx context.Context, plans []*plan) error {
	errs := make([]error, len(plans))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Concurrency)
	for i, p := range plans {
		if !p.write {
			continue
		}
		g.Go(func() error {
			ri, _, err := m.client(p.obj)
			switch {
			case err != nil:
			case p.replace && p.live == nil:
				_, err = ri.Create(ctx, p.obj, metav1.CreateOptions{FieldManager: FieldManager})
			case p.replace:
				_, err = ri.Update(ctx, replacement(p.obj, p.live), metav1.UpdateOptions{FieldManager: FieldManager})
			default:
				_, err = ri.Apply(ctx, p.obj.GetName(), p.obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
			}
			p.written = err == nil
			if err != nil {
				errs[i] = &ObjectError{Ref: p.change.Ref, Action: "apply", Err: err}
				p.change.Action, p.change.Message = Failed, errs[i].Error()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// waitEstablished waits until the CRDs among plans serve their kinds.
func (m *Manager) waitEstablished(ctx context.Context, plans []*plan) error {
	for _, p := range plans {
		if _, ok := crdDefines(p.obj); !ok {
			continue
		}
		if err := WaitEstablished(ctx, m.dynamic, p.obj.GetName(), 30*time.Second); err != nil {
			return &ObjectError{Ref: p.change.Ref, Action: "wait for established", Err: err}
		}
	}
	m.mapper.Reset()
	return nil
}

func (m *Manager) namespaceExists(ctx context.Context, name string) bool {
	_, err := m.dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Get(ctx, name, metav1.GetOptions{})
	return err == nil
}

func isClusterDefinition(obj *unstructured.Unstructured) bool {
	gvk := obj.GroupVersionKind()
	return (gvk.Group == "" && gvk.Kind == "Namespace") || (gvk.Group == CRDResource.Group && gvk.Kind == "CustomResourceDefinition")
}

// crdDefines returns the group and kind a CRD object defines.
func crdDefines(obj *unstructured.Unstructured) (schema.GroupKind, bool) {
	gvk := obj.GroupVersionKind()
	if gvk.Group != CRDResource.Group || gvk.Kind != "CustomResourceDefinition" {
		return schema.GroupKind{}, false
	}
	group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "kind")
	return schema.GroupKind{Group: group, Kind: kind}, kind != ""
}
