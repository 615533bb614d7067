package apply

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager is the server-side apply field manager of every write.
const FieldManager = "flotilla"

// Options tune a Manager.
type Options struct {
	// Concurrency bounds the requests in flight to the API server.
	Concurrency int
}

// DefaultOptions bound the load on the API server by concurrency rather
// than by client-side QPS: 16 requests in flight keep a small apiserver's
// cores busy without queueing in its priority-and-fairness share.
func DefaultOptions() Options { return Options{Concurrency: 16} }

// Manager applies and deletes objects in one cluster.
type Manager struct {
	dynamic   dynamic.Interface
	discovery discovery.DiscoveryInterface
	mapper    meta.ResettableRESTMapper
	opts      Options
}

// NewManager creates a Manager for a cluster.
func NewManager(cfg *rest.Config, opts Options) (*Manager, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cached := memory.NewMemCacheClient(disco)
	return &Manager{
		dynamic:   dyn,
		discovery: disco,
		mapper:    restmapper.NewDeferredDiscoveryRESTMapper(cached),
		opts:      opts,
	}, nil
}

// Dynamic is the manager's dynamic client.
func (m *Manager) Dynamic() dynamic.Interface { return m.dynamic }

// ServerVersion is the cluster's Kubernetes version ("v1.37.2").
func (m *Manager) ServerVersion() (string, error) {
	v, err := m.discovery.ServerVersion()
	if err != nil {
		return "", err
	}
	return v.GitVersion, nil
}

// resource finds the REST resource of an object's kind, refreshing the
// discovery cache once when the kind is unknown (a CRD just installed).
func (m *Manager) resource(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	mapping, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		m.mapper.Reset()
		mapping, err = m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	return mapping, err
}

func (m *Manager) client(obj *unstructured.Unstructured) (dynamic.ResourceInterface, *meta.RESTMapping, error) {
	mapping, err := m.resource(obj.GroupVersionKind())
	if err != nil {
		return nil, nil, err
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return m.dynamic.Resource(mapping.Resource).Namespace(obj.GetNamespace()), mapping, nil
	}
	return m.dynamic.Resource(mapping.Resource), mapping, nil
}

// Client is the dynamic client of obj's resource, in obj's namespace for a
// namespaced kind.
func (m *Manager) Client(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	ri, _, err := m.client(obj)
	return ri, err
}

// Normalize gives namespaced objects without a namespace the default one
// and strips the namespace from cluster-scoped ones. Kinds the cluster does
// not know yet (their CRD is in the same set) are left as they are.
func (m *Manager) Normalize(objs []*unstructured.Unstructured, defaultNamespace string) {
	for _, obj := range objs {
		mapping, err := m.resource(obj.GroupVersionKind())
		if err != nil {
			continue
		}
		switch {
		case mapping.Scope.Name() == meta.RESTScopeNameNamespace && obj.GetNamespace() == "":
			obj.SetNamespace(defaultNamespace)
		case mapping.Scope.Name() == meta.RESTScopeNameRoot:
			obj.SetNamespace("")
		}
	}
}

// ObjectError is a failure of one object; Apply joins them so every failing
// object is reported, not only the first.
type ObjectError struct {
	Ref    ObjectRef
	Action string
	Err    error
}

func (e *ObjectError) Error() string {
	msg := e.Err.Error()
	// API errors repeat the object's identity (its name quoted); keep what
	// is new.
	if i := strings.Index(msg, ": "); i > 0 && strings.Contains(msg[:i], strconv.Quote(e.Ref.Name)) {
		msg = msg[i+2:]
	}
	return fmt.Sprintf("%s %s failed: %s", e.Ref, e.Action, msg)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// Mapping returns the REST mapping of a kind.
func (m *Manager) Mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	return m.resource(gvk)
}
