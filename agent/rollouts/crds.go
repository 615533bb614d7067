package rollouts

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

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

// EnsureCRDs creates each argoproj.io CRD the cluster lacks. CRDs already
// there (from an Argo Rollouts installation) are left untouched. It returns
// the names it created.
func EnsureCRDs(ctx context.Context, client dynamic.Interface) ([]string, error) {
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	var created []string
	for _, crd := range crds {
		_, err := client.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err == nil {
			continue
		}
		if !apierrors.IsNotFound(err) {
			return created, fmt.Errorf("CRD %s: %w", crd.GetName(), err)
		}
		if _, err := client.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{FieldManager: "flotilla"}); err != nil && !apierrors.IsAlreadyExists(err) {
			return created, fmt.Errorf("install CRD %s: %w", crd.GetName(), err)
		}
		created = append(created, crd.GetName())
	}
	return created, nil
}
