package appspec

import (
	"encoding/json"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The Argo CD API group and the kinds the hub interprets instead of applying.
const (
	Group              = "argoproj.io"
	KindApplication    = "Application"
	KindApplicationSet = "ApplicationSet"

	// CascadeFinalizer on an Application means: delete its objects with it.
	CascadeFinalizer = "resources-finalizer.argocd.argoproj.io"
	// InClusterServer is the destination that means "the cluster the
	// Application is synced into": for Flotilla, every selected cluster.
	InClusterServer = "https://kubernetes.default.svc"
	// ClustersAnnotation overrides targeting with a label selector.
	ClustersAnnotation = "flotilla.dev/clusters"
)

// ObjectMeta is the part of metadata the hub reads.
type ObjectMeta struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Finalizers  []string          `json:"finalizers,omitempty"`
}

// Application is argoproj.io/v1alpha1 Application: the fields Flotilla uses,
// with Argo CD's JSON names.
type Application struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   ObjectMeta      `json:"metadata"`
	Spec       ApplicationSpec `json:"spec"`
	// Warnings name the fields of the manifest Flotilla does not act on.
	Warnings []string `json:"-"`
	// Waves is the Application's flotilla.dev/waves annotation, parsed and
	// validated at decode; nil when it has none.
	Waves *Waves `json:"-"`
	// GeneratedBy is the ApplicationSet that generated the Application
	// (nil for one read from a file): the hub rolls a set's Applications
	// out together, in the set's waves.
	GeneratedBy *ApplicationSet `json:"-"`
}

// ApplicationSpec is spec of an Application.
type ApplicationSpec struct {
	Project           string                      `json:"project,omitempty"`
	Source            *ApplicationSource          `json:"source,omitempty"`
	Sources           []ApplicationSource         `json:"sources,omitempty"`
	Destination       Destination                 `json:"destination"`
	SyncPolicy        *SyncPolicy                 `json:"syncPolicy,omitempty"`
	IgnoreDifferences []ResourceIgnoreDifferences `json:"ignoreDifferences,omitempty"`
	// RevisionHistoryLimit is how many desired states per cluster are
	// retained for rollback (the hub's history setting when unset).
	RevisionHistoryLimit *int64 `json:"revisionHistoryLimit,omitempty"`
}

// ApplicationSource is spec.source.
type ApplicationSource struct {
	RepoURL        string           `json:"repoURL"`
	Path           string           `json:"path,omitempty"`
	TargetRevision string           `json:"targetRevision,omitempty"`
	Chart          string           `json:"chart,omitempty"`
	Helm           *HelmSource      `json:"helm,omitempty"`
	Kustomize      *KustomizeSource `json:"kustomize,omitempty"`
	Directory      *DirectorySource `json:"directory,omitempty"`
	Plugin         json.RawMessage  `json:"plugin,omitempty"`
	// Ref names a source of a multi-source Application whose files other
	// sources' Helm value files read as "$ref/path".
	Ref string `json:"ref,omitempty"`
}

// IsChart reports whether the source is a chart from a Helm repository or
// an OCI registry rather than a path in Git: chart is set, or repoURL is
// an oci:// URL naming the chart itself.
func (s *ApplicationSource) IsChart() bool {
	return s.Chart != "" || strings.HasPrefix(s.RepoURL, "oci://")
}

// ValuesOnly reports whether the source of a multi-source Application only
// lends its files to others' value files: a ref with no path.
func (s *ApplicationSource) ValuesOnly() bool {
	return s.Ref != "" && s.Path == "" && !s.IsChart()
}

// AppSources are the Application's sources: spec.sources when set (Argo CD
// then ignores spec.source), else spec.source.
func (a *Application) AppSources() []*ApplicationSource {
	if len(a.Spec.Sources) > 0 {
		out := make([]*ApplicationSource, len(a.Spec.Sources))
		for i := range a.Spec.Sources {
			out[i] = &a.Spec.Sources[i]
		}
		return out
	}
	if a.Spec.Source == nil {
		return nil
	}
	return []*ApplicationSource{a.Spec.Source}
}

// SourceField is the field path of the i-th of the Application's sources.
func (a *Application) SourceField(i int) string {
	if len(a.Spec.Sources) > 0 {
		return fmt.Sprintf("spec.sources[%d]", i)
	}
	return "spec.source"
}

// HelmSource is spec.source.helm.
type HelmSource struct {
	ValueFiles              []string        `json:"valueFiles,omitempty"`
	Values                  string          `json:"values,omitempty"`
	ValuesObject            json.RawMessage `json:"valuesObject,omitempty"`
	Parameters              []HelmParameter `json:"parameters,omitempty"`
	FileParameters          []HelmFileParam `json:"fileParameters,omitempty"`
	ReleaseName             string          `json:"releaseName,omitempty"`
	IgnoreMissingValueFiles bool            `json:"ignoreMissingValueFiles,omitempty"`
	SkipCrds                bool            `json:"skipCrds,omitempty"`
	PassCredentials         bool            `json:"passCredentials,omitempty"`
	KubeVersion             string          `json:"kubeVersion,omitempty"`
	APIVersions             []string        `json:"apiVersions,omitempty"`
	Namespace               string          `json:"namespace,omitempty"`
	Version                 string          `json:"version,omitempty"`
}

// HelmParameter is one entry of spec.source.helm.parameters.
type HelmParameter struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	ForceString bool   `json:"forceString,omitempty"`
}

// HelmFileParam is one entry of spec.source.helm.fileParameters.
type HelmFileParam struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// KustomizeSource is spec.source.kustomize.
type KustomizeSource struct {
	NamePrefix             string             `json:"namePrefix,omitempty"`
	NameSuffix             string             `json:"nameSuffix,omitempty"`
	Images                 []string           `json:"images,omitempty"`
	CommonLabels           map[string]string  `json:"commonLabels,omitempty"`
	CommonAnnotations      map[string]string  `json:"commonAnnotations,omitempty"`
	ForceCommonLabels      bool               `json:"forceCommonLabels,omitempty"`
	ForceCommonAnnotations bool               `json:"forceCommonAnnotations,omitempty"`
	Namespace              string             `json:"namespace,omitempty"`
	Replicas               []KustomizeReplica `json:"replicas,omitempty"`
	Patches                []KustomizePatch   `json:"patches,omitempty"`
	Components             []string           `json:"components,omitempty"`
	// IgnoreMissingComponents skips components that do not exist.
	IgnoreMissingComponents bool `json:"ignoreMissingComponents,omitempty"`
}

// KustomizePatch is one entry of spec.source.kustomize.patches.
type KustomizePatch struct {
	Path    string             `json:"path,omitempty"`
	Patch   string             `json:"patch,omitempty"`
	Target  *KustomizeSelector `json:"target,omitempty"`
	Options map[string]bool    `json:"options,omitempty"`
}

// KustomizeSelector is a patch's target.
type KustomizeSelector struct {
	Group              string `json:"group,omitempty"`
	Version            string `json:"version,omitempty"`
	Kind               string `json:"kind,omitempty"`
	Name               string `json:"name,omitempty"`
	Namespace          string `json:"namespace,omitempty"`
	LabelSelector      string `json:"labelSelector,omitempty"`
	AnnotationSelector string `json:"annotationSelector,omitempty"`
}

// KustomizeReplica is one entry of spec.source.kustomize.replicas.
type KustomizeReplica struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// DirectorySource is spec.source.directory.
type DirectorySource struct {
	Recurse bool           `json:"recurse,omitempty"`
	Include string         `json:"include,omitempty"`
	Exclude string         `json:"exclude,omitempty"`
	Jsonnet *JsonnetSource `json:"jsonnet,omitempty"`
}

// JsonnetSource is spec.source.directory.jsonnet.
type JsonnetSource struct {
	ExtVars []JsonnetVar `json:"extVars,omitempty"`
	TLAs    []JsonnetVar `json:"tlas,omitempty"`
	Libs    []string     `json:"libs,omitempty"`
}

// JsonnetVar is a top-level argument or external variable.
type JsonnetVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Code  bool   `json:"code,omitempty"`
}

// Destination is spec.destination.
type Destination struct {
	Server    string `json:"server,omitempty"`
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// SyncPolicy is spec.syncPolicy.
type SyncPolicy struct {
	Automated                *Automated                `json:"automated,omitempty"`
	SyncOptions              []string                  `json:"syncOptions,omitempty"`
	Retry                    *Retry                    `json:"retry,omitempty"`
	ManagedNamespaceMetadata *ManagedNamespaceMetadata `json:"managedNamespaceMetadata,omitempty"`
}

// ManagedNamespaceMetadata is spec.syncPolicy.managedNamespaceMetadata.
type ManagedNamespaceMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Automated is spec.syncPolicy.automated.
type Automated struct {
	// Enabled false turns automation off (Argo CD 3); unset is on.
	Enabled    *bool `json:"enabled,omitempty"`
	Prune      bool  `json:"prune,omitempty"`
	SelfHeal   bool  `json:"selfHeal,omitempty"`
	AllowEmpty bool  `json:"allowEmpty,omitempty"`
}

// Retry is spec.syncPolicy.retry.
type Retry struct {
	Limit   int64    `json:"limit,omitempty"`
	Backoff *Backoff `json:"backoff,omitempty"`
}

// Backoff is spec.syncPolicy.retry.backoff.
type Backoff struct {
	Duration    string `json:"duration,omitempty"`
	Factor      *int64 `json:"factor,omitempty"`
	MaxDuration string `json:"maxDuration,omitempty"`
}

// ResourceIgnoreDifferences is one entry of spec.ignoreDifferences.
type ResourceIgnoreDifferences struct {
	Group                 string   `json:"group,omitempty"`
	Kind                  string   `json:"kind"`
	Name                  string   `json:"name,omitempty"`
	Namespace             string   `json:"namespace,omitempty"`
	JSONPointers          []string `json:"jsonPointers,omitempty"`
	JQPathExpressions     []string `json:"jqPathExpressions,omitempty"`
	ManagedFieldsManagers []string `json:"managedFieldsManagers,omitempty"`
}

// ApplicationSet is argoproj.io/v1alpha1 ApplicationSet.
type ApplicationSet struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   ObjectMeta         `json:"metadata"`
	Spec       ApplicationSetSpec `json:"spec"`
	// Warnings name the fields of the manifest Flotilla does not act on;
	// every Application it generates carries them.
	Warnings []string `json:"-"`
	// Waves is the set's flotilla.dev/waves annotation, parsed and
	// validated at decode; nil when it has none.
	Waves *Waves `json:"-"`
}

// ApplicationSetSpec is spec of an ApplicationSet.
type ApplicationSetSpec struct {
	GoTemplate        bool        `json:"goTemplate,omitempty"`
	GoTemplateOptions []string    `json:"goTemplateOptions,omitempty"`
	Generators        []Generator `json:"generators"`
	// Template is kept raw: its strings are templates, expanded per
	// parameter set before being read as an Application.
	Template json.RawMessage `json:"template"`
	// TemplatePatch is a Go template of a patch applied to each generated
	// Application (goTemplate only), as Argo CD applies it.
	TemplatePatch string `json:"templatePatch,omitempty"`
	// Strategy is Argo CD's progressive sync: the order in which the
	// generated Applications are updated.
	Strategy *ApplicationSetStrategy `json:"strategy,omitempty"`
}

// Strategy types of spec.strategy.
const (
	StrategyAllAtOnce   = "AllAtOnce"
	StrategyRollingSync = "RollingSync"
)

// ApplicationSetStrategy is spec.strategy.
type ApplicationSetStrategy struct {
	// Type is AllAtOnce (also when empty) or RollingSync.
	Type        string               `json:"type,omitempty"`
	RollingSync *RollingSyncStrategy `json:"rollingSync,omitempty"`
	// DeletionOrder Reverse (delete the last step's Applications first)
	// is not implemented: it is reported as a field not acted on.
	DeletionOrder string `json:"deletionOrder,omitempty"`
}

// RollingSyncStrategy is spec.strategy.rollingSync.
type RollingSyncStrategy struct {
	Steps []RollingSyncStep `json:"steps,omitempty"`
}

// RollingSyncStep is one step of a rolling sync: the generated
// Applications whose labels its expressions select, updated maxUpdate at
// a time (all when unset).
type RollingSyncStep struct {
	MatchExpressions []MatchExpression   `json:"matchExpressions,omitempty"`
	MaxUpdate        *intstr.IntOrString `json:"maxUpdate,omitempty"`
}

// MatchExpression is a requirement on one label of an Application:
// operator In or NotIn the values.
type MatchExpression struct {
	Key      string   `json:"key,omitempty"`
	Operator string   `json:"operator,omitempty"`
	Values   []string `json:"values,omitempty"`
}

// Generator is one entry of spec.generators (or of a matrix or merge
// generator's generators). Exactly one generator is set.
type Generator struct {
	List     *ListGenerator     `json:"list,omitempty"`
	Clusters *ClustersGenerator `json:"clusters,omitempty"`
	Git      *GitGenerator      `json:"git,omitempty"`
	Matrix   *CombineGenerator  `json:"matrix,omitempty"`
	Merge    *CombineGenerator  `json:"merge,omitempty"`
	// Selector keeps the parameter sets whose flattened parameters match.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Unsupported generators are named in errors.
	SCMProvider     json.RawMessage `json:"scmProvider,omitempty"`
	PullRequest     json.RawMessage `json:"pullRequest,omitempty"`
	ClusterDecision json.RawMessage `json:"clusterDecisionResource,omitempty"`
	Plugin          json.RawMessage `json:"plugin,omitempty"`
}

// ListGenerator is the list generator: one parameter set per element.
type ListGenerator struct {
	Elements []json.RawMessage `json:"elements"`
	// Template overrides fields of the ApplicationSet's template.
	Template json.RawMessage `json:"template,omitempty"`
}

// ClustersGenerator is the cluster generator: one parameter set per
// registered cluster matching the selector.
type ClustersGenerator struct {
	Selector metav1.LabelSelector `json:"selector,omitempty"`
	Values   map[string]string    `json:"values,omitempty"`
	Template json.RawMessage      `json:"template,omitempty"`
}

// GitGenerator is the git generator: one parameter set per directory of
// a repository that the directories patterns select, or per object of
// the files the files patterns select.
type GitGenerator struct {
	RepoURL         string            `json:"repoURL"`
	Revision        string            `json:"revision,omitempty"`
	Directories     []GitPathItem     `json:"directories,omitempty"`
	Files           []GitPathItem     `json:"files,omitempty"`
	Values          map[string]string `json:"values,omitempty"`
	PathParamPrefix string            `json:"pathParamPrefix,omitempty"`
	Template        json.RawMessage   `json:"template,omitempty"`
}

// GitPathItem is a path pattern, included or excluded.
type GitPathItem struct {
	Path    string `json:"path"`
	Exclude bool   `json:"exclude,omitempty"`
}

// CombineGenerator is the matrix generator (every combination of its two
// generators' parameter sets) or the merge generator (the first's sets,
// overridden by the others' sets with the same mergeKeys).
type CombineGenerator struct {
	Generators []Generator     `json:"generators"`
	MergeKeys  []string        `json:"mergeKeys,omitempty"`
	Template   json.RawMessage `json:"template,omitempty"`
}

// Cluster is a registered cluster as generators and targeting see it.
type Cluster struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	// ServerURLs are the API server URLs the cluster's agent registered:
	// destination.server may name it by one of them.
	ServerURLs []string
}

// KnownBy reports whether the cluster registered server as one of its
// URLs (compared without a trailing slash, scheme and host in any case).
func (c Cluster) KnownBy(server string) bool {
	for _, u := range c.ServerURLs {
		if NormalizeServerURL(u) == NormalizeServerURL(server) {
			return true
		}
	}
	return false
}

// NormalizeServerURL makes API server URLs comparable.
func NormalizeServerURL(u string) string {
	u = strings.TrimSuffix(strings.TrimSpace(u), "/")
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	host, path, _ := strings.Cut(rest, "/")
	if path != "" {
		path = "/" + path
	}
	return strings.ToLower(scheme) + "://" + strings.ToLower(host) + path
}
