package reconcile

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/render"
)

// renderDesired fetches the artifact and renders the objects to apply,
// each labelled with its application.
func (s *Syncer) renderDesired(ctx context.Context, spec syncSpec) ([]*unstructured.Unstructured, error) {
	_, fetchSpan := tracer.Start(ctx, "agent.fetch")
	dir, err := s.unpacked(ctx, spec.ds.GetArtifact())
	fetchSpan.End()
	if err != nil {
		return nil, err
	}
	_, renderSpan := tracer.Start(ctx, "agent.render")
	defer renderSpan.End()
	res, err := render.Render(ctx, render.Request{
		Root: dir, Path: spec.ds.GetArtifact().GetRoot(), Spec: spec.ds.GetRender(),
		ReleaseName: spec.app, Namespace: spec.namespace, KubeVersion: s.opts.KubeVersion,
	})
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, m := range res.Manifests {
		if appspec.IsArgoKind(m.Object.GetAPIVersion(), m.Object.GetKind()) {
			continue // the hub interprets Applications; they are not applied
		}
		objs = append(objs, m.Object)
	}
	s.deps.Cluster.Normalize(objs, spec.namespace)
	for _, o := range objs {
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[AppLabel] = spec.app
		o.SetLabels(labels)
	}
	return objs, nil
}
