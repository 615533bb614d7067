package reconcile

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/rollouts"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// desiredObjects are the rendered objects of the desired state an
// application last synced, what drift is measured against, kept as JSON
// between drift checks: an agent holds them for as long as it runs, and a
// decoded object (nested maps) takes several times its JSON. With 5,000
// ConfigMaps decoded, they were over half the agent's live heap.
type desiredObjects struct {
	// byKey are the objects' JSON by apply.ObjectRef.Key.
	byKey map[string][]byte
	// controllerFields are what the rollouts controller sets among them
	// (rollouts.ControllerFields), found when they are kept, so a drift
	// check of one object decodes only that one.
	controllerFields []*flotillav1.IgnoreDifferences
}

// keepDesired encodes objs, which the caller no longer changes.
func keepDesired(objs []*unstructured.Unstructured) (*desiredObjects, error) {
	d := &desiredObjects{byKey: make(map[string][]byte, len(objs)), controllerFields: rollouts.ControllerFields(objs)}
	for _, o := range objs {
		data, err := json.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("%s: keep the desired object: %w", apply.RefOf(o), err)
		}
		d.byKey[apply.RefOf(o).Key()] = data
	}
	return d, nil
}

// objects decodes the objects of keys that are kept (all of them when
// keys is nil), each a fresh copy the caller may change, its numbers
// int64 or float64 as at render.
func (d *desiredObjects) objects(keys []string) ([]*unstructured.Unstructured, error) {
	if keys == nil {
		keys = slices.Collect(maps.Keys(d.byKey))
	}
	out := make([]*unstructured.Unstructured, 0, len(keys))
	for _, key := range keys {
		data, ok := d.byKey[key]
		if !ok {
			continue
		}
		var obj map[string]any
		if err := utiljson.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("%s: decode the desired object: %w", key, err)
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
	return out, nil
}
