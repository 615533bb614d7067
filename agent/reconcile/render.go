package reconcile

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/render"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
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
	manifests, err := renderArtifact(ctx, dir, spec.ds, render.Request{
		ReleaseName: spec.app, Namespace: spec.namespace, KubeVersion: s.opts.KubeVersion,
	})
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, m := range manifests {
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
		labels[AppLabel] = appkey.LabelValue(spec.app)
		o.SetLabels(labels)
	}
	return objs, nil
}

// renderArtifact renders an unpacked artifact as its desired state says:
// the directory at its root, or each of its sources in order, merged as
// Argo CD merges multiple sources. base carries what every render shares.
func renderArtifact(ctx context.Context, dir string, ds *flotillav1.DesiredState, base render.Request) ([]render.Manifest, error) {
	if len(ds.GetSources()) == 0 {
		req := base
		req.Root, req.Path, req.Spec = dir, ds.GetArtifact().GetRoot(), ds.GetRender()
		res, err := render.Render(ctx, req)
		if err != nil {
			return nil, err
		}
		return res.Manifests, nil
	}
	refs := map[string]string{}
	for _, src := range ds.GetSources() {
		if src.GetRef() == "" {
			continue
		}
		root, err := render.ResolvePath(dir, src.GetDir())
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src.GetDir(), err)
		}
		refs[src.GetRef()] = root
	}
	var results []*render.Result
	for i, src := range ds.GetSources() {
		if src.GetValuesOnly() {
			continue
		}
		root, err := render.ResolvePath(dir, src.GetDir())
		if err != nil {
			return nil, fmt.Errorf("source %d: %w", i, err)
		}
		req := base
		req.Root, req.Path, req.Spec, req.Refs = root, src.GetPath(), src.GetRender(), refs
		res, err := render.Render(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("spec.sources[%d] (%s): %w", i, src.GetSource().GetRepoUrl(), err)
		}
		results = append(results, res)
	}
	return render.Merge(results...), nil
}
