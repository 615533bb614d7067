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
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/internal/render"
)

//go:embed crds/*.yaml
var crdFiles embed.FS

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
		live, err := client.Resource(apply.CRDResource).Get(ctx, crd.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := client.Resource(apply.CRDResource).Create(ctx, crd, metav1.CreateOptions{FieldManager: "flotilla"}); err != nil && !apierrors.IsAlreadyExists(err) {
				return changed, fmt.Errorf("install CRD %s: %w", crd.GetName(), err)
			}
		case err != nil:
			return changed, fmt.Errorf("CRD %s: %w", crd.GetName(), err)
		case live.GetLabels()[managedByLabel] != "flotilla" || live.GetAnnotations()[definitionAnnotation] == crd.GetAnnotations()[definitionAnnotation]:
			continue
		default:
			crd.SetResourceVersion(live.GetResourceVersion())
			if _, err := client.Resource(apply.CRDResource).Update(ctx, crd, metav1.UpdateOptions{FieldManager: "flotilla"}); err != nil {
				return changed, fmt.Errorf("update CRD %s: %w", crd.GetName(), err)
			}
		}
		changed = append(changed, crd.GetName())
	}
	for _, name := range changed {
		// Served before a watch of its kind starts, so that watch does
		// not begin with a back-off.
		if err := apply.WaitEstablished(ctx, client, name, crdEstablishTimeout); err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// crdEstablishTimeout bounds the wait for each CRD EnsureCRDs changed: an
// API server establishes a new CRD within seconds; a minute leaves room
// for a loaded one.
const crdEstablishTimeout = time.Minute

const (
	managedByLabel       = "app.kubernetes.io/managed-by"
	definitionAnnotation = "flotilla.dev/definition"
)
