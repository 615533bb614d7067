package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/internal/appkey"
)

// Inventory is what an application owns in the cluster.
type Inventory struct {
	App     string            `json:"app"`
	Objects []apply.ObjectRef `json:"objects"`
	// Applied identifies the desired state last applied in full (history
	// id and artifact digest); the same desired state again is a no-op.
	Applied string `json:"applied,omitempty"`
	// HistoryID is the highest history id of the application the agent
	// accepted, recorded before anything of it is written: a desired state
	// with a lower one is a replay, refused after a restart too (a
	// rollback is a new, higher entry).
	HistoryID uint64 `json:"historyID,omitempty"`
	// Deleted marks a tombstone: the application's deletion, at HistoryID,
	// was carried out. The inventory stays, owning nothing, so that an
	// older entry of the application replayed later does not bring it back.
	Deleted bool `json:"deleted,omitempty"`
}

// Tombstone is what is kept of app once its deletion at historyID is done.
func Tombstone(app string, historyID uint64) *Inventory {
	return &Inventory{App: app, HistoryID: historyID, Deleted: true}
}

// Store reads and writes inventories as ConfigMaps in one namespace.
type Store struct {
	configMaps dynamic.ResourceInterface
	namespace  string
}

var configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// NewStore keeps inventories in namespace. It uses the dynamic client, as
// the rest of the agent does, so the agent links no typed clientset.
func NewStore(client dynamic.Interface, namespace string) *Store {
	return &Store{configMaps: client.Resource(configMapsGVR).Namespace(namespace), namespace: namespace}
}

func configMapName(app string) string { return appkey.ObjectName("flotilla-inventory-", app) }

// Load returns the inventory of app, empty when there is none.
func (s *Store) Load(ctx context.Context, app string) (*Inventory, error) {
	cm, err := s.configMaps.Get(ctx, configMapName(app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &Inventory{App: app}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory of %s: %w", app, err)
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "inventory")
	inv := &Inventory{}
	if err := json.Unmarshal([]byte(data), inv); err != nil {
		return nil, fmt.Errorf("inventory of %s is corrupt: %w", app, err)
	}
	return inv, nil
}

// Save writes the inventory.
func (s *Store) Save(ctx context.Context, inv *Inventory) error {
	slices.SortFunc(inv.Objects, func(a, b apply.ObjectRef) int {
		if a.Key() < b.Key() {
			return -1
		}
		if a.Key() > b.Key() {
			return 1
		}
		return 0
	})
	data, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": configMapName(inv.App), "namespace": s.namespace,
			"labels": map[string]any{"app.kubernetes.io/managed-by": "flotilla", "flotilla.dev/inventory": appkey.LabelValue(inv.App)}},
		"data": map[string]any{"inventory": string(data)},
	}}
	_, err = s.configMaps.Apply(ctx, configMapName(inv.App), cm, metav1.ApplyOptions{FieldManager: apply.FieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("save inventory of %s: %w", inv.App, err)
	}
	return nil
}

// Diff returns the objects of old that are not in current (by group, kind,
// namespace and name).
func Diff(old, current []apply.ObjectRef) []apply.ObjectRef {
	keep := map[string]bool{}
	for _, r := range current {
		keep[r.Key()] = true
	}
	var gone []apply.ObjectRef
	for _, r := range old {
		if !keep[r.Key()] {
			gone = append(gone, r)
		}
	}
	return gone
}
