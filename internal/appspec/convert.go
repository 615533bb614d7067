package appspec

import (
	"slices"

	"sigs.k8s.io/yaml"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// RenderSpec converts a source into the wire protocol's render spec. A
// chart from a repository renders with Helm whether or not it sets helm.
// valuesObject, when set, is carried as YAML in values, where Argo CD
// gives it precedence over values.
func (src *ApplicationSource) RenderSpec() (*flotillav1.RenderSpec, error) {
	spec := &flotillav1.RenderSpec{}
	if src.IsChart() && src.Helm == nil {
		spec.Helm = &flotillav1.HelmSpec{}
	}
	if h := src.Helm; h != nil {
		values := h.Values
		if len(h.ValuesObject) > 0 && string(h.ValuesObject) != "null" {
			y, err := yaml.JSONToYAML(h.ValuesObject)
			if err != nil {
				return nil, &Error{Field: "helm.valuesObject", Reason: err.Error()}
			}
			values = string(y)
		}
		spec.Helm = &flotillav1.HelmSpec{
			ValueFiles:              slices.Clone(h.ValueFiles),
			Values:                  values,
			ReleaseName:             h.ReleaseName,
			IgnoreMissingValueFiles: h.IgnoreMissingValueFiles,
			SkipCrds:                h.SkipCrds,
			PassCredentials:         h.PassCredentials,
			KubeVersion:             h.KubeVersion,
			ApiVersions:             slices.Clone(h.APIVersions),
			Namespace:               h.Namespace,
		}
		for _, p := range h.Parameters {
			spec.Helm.Parameters = append(spec.Helm.Parameters, &flotillav1.HelmParameter{Name: p.Name, Value: p.Value, ForceString: p.ForceString})
		}
		for _, p := range h.FileParameters {
			spec.Helm.FileParameters = append(spec.Helm.FileParameters, &flotillav1.HelmParameter{Name: p.Name, Value: p.Path})
		}
	}
	if k := src.Kustomize; k != nil {
		spec.Kustomize = &flotillav1.KustomizeSpec{
			NamePrefix:             k.NamePrefix,
			NameSuffix:             k.NameSuffix,
			Images:                 slices.Clone(k.Images),
			CommonLabels:           k.CommonLabels,
			CommonAnnotations:      k.CommonAnnotations,
			Namespace:              k.Namespace,
			ForceCommonLabels:      k.ForceCommonLabels,
			ForceCommonAnnotations: k.ForceCommonAnnotations,
		}
		for _, r := range k.Replicas {
			spec.Kustomize.Replicas = append(spec.Kustomize.Replicas, &flotillav1.KustomizeReplica{Name: r.Name, Count: r.Count})
		}
		for _, p := range k.Patches {
			patch := &flotillav1.KustomizePatch{Path: p.Path, Patch: p.Patch, Options: p.Options}
			if t := p.Target; t != nil {
				patch.Target = &flotillav1.KustomizeSelector{Group: t.Group, Version: t.Version, Kind: t.Kind, Name: t.Name,
					Namespace: t.Namespace, LabelSelector: t.LabelSelector, AnnotationSelector: t.AnnotationSelector}
			}
			spec.Kustomize.Patches = append(spec.Kustomize.Patches, patch)
		}
		spec.Kustomize.Components = slices.Clone(k.Components)
		spec.Kustomize.IgnoreMissingComponents = k.IgnoreMissingComponents
	}
	if d := src.Directory; d != nil {
		spec.Directory = &flotillav1.DirectorySpec{Recurse: d.Recurse, Include: d.Include, Exclude: d.Exclude}
		if j := d.Jsonnet; j != nil {
			vars := func(list []JsonnetVar) []*flotillav1.JsonnetVar {
				var out []*flotillav1.JsonnetVar
				for _, v := range list {
					out = append(out, &flotillav1.JsonnetVar{Name: v.Name, Value: v.Value, Code: v.Code})
				}
				return out
			}
			spec.Directory.Jsonnet = &flotillav1.JsonnetSpec{Tlas: vars(j.TLAs), ExtVars: vars(j.ExtVars), Libs: slices.Clone(j.Libs)}
		}
	}
	return spec, nil
}

// SyncPolicy converts spec.syncPolicy.
func (a *Application) SyncPolicy() *flotillav1.SyncPolicy {
	p := a.Spec.SyncPolicy
	if p == nil {
		return &flotillav1.SyncPolicy{}
	}
	out := &flotillav1.SyncPolicy{SyncOptions: slices.Clone(p.SyncOptions)}
	if m := p.ManagedNamespaceMetadata; m != nil {
		out.ManagedNamespaceMetadata = &flotillav1.ManagedNamespaceMetadata{Labels: m.Labels, Annotations: m.Annotations}
	}
	if p.Automated != nil && (p.Automated.Enabled == nil || *p.Automated.Enabled) {
		out.Automated = &flotillav1.Automated{Prune: p.Automated.Prune, SelfHeal: p.Automated.SelfHeal, AllowEmpty: p.Automated.AllowEmpty}
	}
	if r := p.Retry; r != nil {
		out.Retry = &flotillav1.Retry{Limit: r.Limit}
		if b := r.Backoff; b != nil {
			out.Retry.Backoff = &flotillav1.Backoff{Duration: b.Duration, MaxDuration: b.MaxDuration}
			if b.Factor != nil {
				out.Retry.Backoff.Factor = *b.Factor
			}
		}
	}
	return out
}

// IgnoreDifferences converts spec.ignoreDifferences.
func (a *Application) IgnoreDifferences() []*flotillav1.IgnoreDifferences {
	var out []*flotillav1.IgnoreDifferences
	for _, d := range a.Spec.IgnoreDifferences {
		out = append(out, &flotillav1.IgnoreDifferences{
			Group: d.Group, Kind: d.Kind, Name: d.Name, Namespace: d.Namespace,
			JsonPointers:          slices.Clone(d.JSONPointers),
			JqPathExpressions:     slices.Clone(d.JQPathExpressions),
			ManagedFieldsManagers: slices.Clone(d.ManagedFieldsManagers),
		})
	}
	return out
}

// Cascade reports whether removing the Application deletes its objects.
func (a *Application) Cascade() bool {
	return slices.Contains(a.Metadata.Finalizers, CascadeFinalizer)
}
