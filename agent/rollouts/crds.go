package rollouts

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/internal/render"
)

//go:embed crds/*.yaml
var crdFiles embed.FS

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// CRDs returns the argoproj.io CRDs the agent installs.
func CRDs() ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	err := fs.WalkDir(crdFiles, "crds", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := crdFiles.ReadFile(p)
		if err != nil {
			return err
		}
		objs, err := render.Decode(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, objs...)
		return nil
	})
	return out, err
}

// EnsureCRDs creates each argoproj.io CRD the cluster lacks and brings
// the ones an earlier agent installed up to date. CRDs from an Argo
// Rollouts installation are left untouched. It returns the names it
// created or updated.
func EnsureCRDs(ctx context.Context, client dynamic.Interface) ([]string, error) {
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, crd := range crds {
		// The server defaults a CRD's spec; a hash of ours tells whether
		// the installed one is the current definition.
		spec, _ := json.Marshal(crd.Object["spec"])
		sum := sha256.Sum256(spec)
		crd.SetAnnotations(map[string]string{definitionAnnotation: hex.EncodeToString(sum[:8])})
		live, err := client.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := client.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{FieldManager: "flotilla"}); err != nil && !apierrors.IsAlreadyExists(err) {
				return changed, fmt.Errorf("install CRD %s: %w", crd.GetName(), err)
			}
		case err != nil:
			return changed, fmt.Errorf("CRD %s: %w", crd.GetName(), err)
		case live.GetLabels()[managedByLabel] != "flotilla" || live.GetAnnotations()[definitionAnnotation] == crd.GetAnnotations()[definitionAnnotation]:
			continue
		default:
			crd.SetResourceVersion(live.GetResourceVersion())
			if _, err := client.Resource(crdGVR).Update(ctx, crd, metav1.UpdateOptions{FieldManager: "flotilla"}); err != nil {
				return changed, fmt.Errorf("update CRD %s: %w", crd.GetName(), err)
			}
		}
		changed = append(changed, crd.GetName())
	}
	for _, name := range changed {
		if err := waitEstablished(ctx, client, name); err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// waitEstablished waits until the API server serves the CRD, so a watch
// of its kind started next does not begin with a back-off.
func waitEstablished(ctx context.Context, client dynamic.Interface, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		crd, err := client.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s is not established: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

const (
	managedByLabel       = "app.kubernetes.io/managed-by"
	definitionAnnotation = "flotilla.dev/definition"
)
