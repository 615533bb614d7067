package rollouts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
)

// runStore is the AnalysisRuns of one namespace, with the templates and
// Secrets they are made from: what a Rollout's analysis and a fleet
// wave's analysis (WaveAnalyses) share. A run is created from its
// templates once; after that, its own spec and status are the truth, so
// a restarted agent continues its measurements.
type runStore struct {
	client    dynamic.Interface
	namespace string
}

func (s runStore) ri() dynamic.ResourceInterface {
	return s.client.Resource(runGVR).Namespace(s.namespace)
}

// templates reads the specs of the AnalysisTemplates (in the namespace)
// and ClusterAnalysisTemplates refs name; an error names the template
// and wraps the API server's (a missing one is apierrors.IsNotFound).
func (s runStore) templates(ctx context.Context, refs []TemplateRef) ([]analysis.NamedSpec, error) {
	var templates []analysis.NamedSpec
	for _, ref := range refs {
		ri, what := s.client.Resource(templateGVR).Namespace(s.namespace), "AnalysisTemplate"
		if ref.ClusterScope {
			ri, what = s.client.Resource(clusterGVR).Namespace(""), "ClusterAnalysisTemplate"
		}
		t, err := ri.Get(ctx, ref.TemplateName, metav1.GetOptions{})
		if err == nil {
			var spec analysis.Spec
			if spec, err = templateSpec(t); err == nil {
				templates = append(templates, analysis.NamedSpec{Name: what + " " + ref.TemplateName, Spec: spec})
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, ref.TemplateName, err)
		}
	}
	return templates, nil
}

// create creates run (its name, labels, annotations and owner set) with
// spec.
func (s runStore) create(ctx context.Context, run *unstructured.Unstructured, spec analysis.Spec) (*unstructured.Unstructured, error) {
	specMap, err := toMap(spec)
	if err != nil {
		return nil, err
	}
	run = run.DeepCopy()
	run.SetAPIVersion("argoproj.io/v1alpha1")
	run.SetKind("AnalysisRun")
	run.SetNamespace(s.namespace)
	run.Object["spec"] = specMap
	created, err := s.ri().Create(ctx, run, metav1.CreateOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, fmt.Errorf("create AnalysisRun %s: %w", run.GetName(), err)
	}
	return created, nil
}

// advance takes the measurements of the run obj that are due at now and
// stores its status, returning it and when the run next needs a look
// (zero: it completed). A completed run is returned as it is. Secret args
// are read for the measurements only, never stored; a Secret or key that
// is missing ends the run as Error, as in Argo Rollouts. Nothing is
// written once ctx ended: a measurement cut short by a stopping agent is
// taken again by the next one.
func (s runStore) advance(ctx context.Context, obj *unstructured.Unstructured, now time.Time, measurer analysis.Measurer, observe analysis.Observe) (*analysis.Status, time.Time, error) {
	spec, status, err := readRun(obj)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("AnalysisRun %s: %w", obj.GetName(), err)
	}
	if status.Phase.Completed() {
		return status, time.Time{}, nil
	}
	var next time.Time
	switch err := spec.ReadSecrets(func(name, key string) (string, error) { return s.secretKey(ctx, name, key) }); {
	case transient(err):
		return nil, time.Time{}, err
	case err != nil:
		status.Phase, status.Message = analysis.Error, err.Error()
	default:
		next = analysis.Reconcile(ctx, spec, status, now, analysis.Env{Measurer: measurer, Jobs: runJobs{client: s.client, run: obj}, Observe: observe})
	}
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	if err := s.write(ctx, obj, status); err != nil {
		return nil, time.Time{}, err
	}
	return status, next, nil
}

// secretKey reads a key of a Secret in the namespace, for an analysis
// arg; errors name the Secret and key, never a value.
func (s runStore) secretKey(ctx context.Context, name, key string) (string, error) {
	secret, err := s.client.Resource(secretGVR).Namespace(s.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	data, found, _ := unstructured.NestedString(secret.Object, "data", key)
	if !found {
		return "", fmt.Errorf("secret %q has no key %q", name, key)
	}
	value, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", fmt.Errorf("secret %q key %q: not base64", name, key)
	}
	return string(value), nil
}

// write stores a run's status (measurements included) when it changed.
func (s runStore) write(ctx context.Context, obj *unstructured.Unstructured, status *analysis.Status) error {
	m, err := toMap(status)
	if err != nil {
		return err
	}
	old, _, _ := unstructured.NestedMap(obj.Object, "status")
	if apiequality.Semantic.DeepEqual(old, m) {
		return nil
	}
	obj = obj.DeepCopy()
	obj.Object["status"] = m
	_, err = s.client.Resource(runGVR).Namespace(obj.GetNamespace()).UpdateStatus(ctx, obj, metav1.UpdateOptions{FieldManager: fieldManager})
	if err != nil {
		return fmt.Errorf("AnalysisRun %s status: %w", obj.GetName(), err)
	}
	return nil
}

func templateSpec(t *unstructured.Unstructured) (analysis.Spec, error) {
	var spec analysis.Spec
	raw, _, _ := unstructured.NestedMap(t.Object, "spec")
	data, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	if err != nil {
		return spec, fmt.Errorf("spec: %w", err)
	}
	return spec, nil
}

func readRun(obj *unstructured.Unstructured) (*analysis.Spec, *analysis.Status, error) {
	spec, err := templateSpec(obj)
	if err != nil {
		return nil, nil, err
	}
	var status analysis.Status
	raw, _, _ := unstructured.NestedMap(obj.Object, "status")
	data, _ := json.Marshal(raw)
	if err := json.Unmarshal(data, &status); err != nil {
		return nil, nil, fmt.Errorf("status: %w", err)
	}
	return &spec, &status, nil
}

func toMap(v any) (map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(data, &m)
}
