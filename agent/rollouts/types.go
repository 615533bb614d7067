package rollouts

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
)

// UnsupportedKinds are the argoproj.io kinds the agent's rollouts
// controller does not run, with why: a sync of an object of one fails
// naming it, before anything is applied, rather than apply an object
// nothing acts on.
var UnsupportedKinds = map[schema.GroupKind]string{
	{Group: "argoproj.io", Kind: "Experiment"}: "Experiments are not supported by the agent's rollouts controller (docs/rollouts.md); " +
		"to run them, install Argo Rollouts in the cluster and start the agent with --rollouts-controller=false",
}

// Rollout is the part of Argo Rollouts' Rollout the agent acts on, with
// Argo Rollouts' field names, so manifests and status read the same.
type Rollout struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              Spec   `json:"spec"`
	Status            Status `json:"status"`
}

// Spec is a Rollout's spec.
type Spec struct {
	Replicas        *int32                `json:"replicas,omitempty"`
	Selector        *metav1.LabelSelector `json:"selector,omitempty"`
	Template        map[string]any        `json:"template,omitempty"`
	WorkloadRef     *WorkloadRef          `json:"workloadRef,omitempty"`
	MinReadySeconds int32                 `json:"minReadySeconds,omitempty"`
	// ProgressDeadlineSeconds (default 600) is how long a rollout may make
	// no progress before it is Degraded; ProgressDeadlineAbort aborts it.
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`
	ProgressDeadlineAbort   bool   `json:"progressDeadlineAbort,omitempty"`
	Paused                  bool   `json:"paused,omitempty"`
	RevisionHistoryLimit    *int32 `json:"revisionHistoryLimit,omitempty"`
	// RollbackWindow fast-tracks a rollback to one of the last Revisions
	// revisions: no steps, no analysis.
	RollbackWindow *RollbackWindow `json:"rollbackWindow,omitempty"`
	// Analysis bounds the finished AnalysisRuns kept.
	Analysis *RunHistory `json:"analysis,omitempty"`
	Strategy Strategy    `json:"strategy"`
}

// RollbackWindow is spec.rollbackWindow.
type RollbackWindow struct {
	Revisions int32 `json:"revisions,omitempty"`
}

// RunHistory is spec.analysis: how many finished AnalysisRuns of earlier
// revisions are kept, per outcome (5 each by default).
type RunHistory struct {
	SuccessfulRunHistoryLimit   *int32 `json:"successfulRunHistoryLimit,omitempty"`
	UnsuccessfulRunHistoryLimit *int32 `json:"unsuccessfulRunHistoryLimit,omitempty"`
}

// WorkloadRef takes the pod template (and, when the Rollout has none, the
// selector) from a Deployment; ScaleDown says what happens to the
// Deployment's own pods: never (the default), onsuccess or progressively.
type WorkloadRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	ScaleDown  string `json:"scaleDown,omitempty"`
}

// The workloadRef.scaleDown modes, as Argo Rollouts names them.
const (
	scaleDownNever         = "never"
	scaleDownOnSuccess     = "onsuccess"
	scaleDownProgressively = "progressively"
)

// Strategy is canary or blue-green.
type Strategy struct {
	Canary    *Canary    `json:"canary,omitempty"`
	BlueGreen *BlueGreen `json:"blueGreen,omitempty"`
}

// Canary is strategy.canary.
type Canary struct {
	CanaryService  string              `json:"canaryService,omitempty"`
	StableService  string              `json:"stableService,omitempty"`
	Steps          []Step              `json:"steps,omitempty"`
	Analysis       *BackgroundAnalysis `json:"analysis,omitempty"`
	MaxSurge       *intstr.IntOrString `json:"maxSurge,omitempty"`
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
	TrafficRouting *TrafficRouting     `json:"trafficRouting,omitempty"`
	// ScaleDownDelaySeconds keeps the old version up that long after a
	// routed canary is promoted (default 30), while routers catch up.
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`
	// AbortScaleDownDelaySeconds keeps an aborted routed canary up that
	// long (default 30); a canary without a router goes at once.
	AbortScaleDownDelaySeconds *int32 `json:"abortScaleDownDelaySeconds,omitempty"`
	// DynamicStableScale shrinks a routed canary's stable set as traffic
	// leaves it.
	DynamicStableScale bool `json:"dynamicStableScale,omitempty"`
}

// TrafficRouting is how a canary's weight reaches traffic: ingress-nginx
// (Nginx) or the Gateway API plugin, the two routers the agent drives.
type TrafficRouting struct {
	Nginx   *NginxRouting              `json:"nginx,omitempty"`
	Plugins map[string]json.RawMessage `json:"plugins,omitempty"`
}

// router sets the canary's share of traffic, in percent.
type router interface {
	setWeight(ctx context.Context, r *rolloutCtx, c *Canary, weight int32) error
}

// gatewayPlugin is the Argo Rollouts Gateway API plugin's name.
const gatewayPlugin = "argoproj-labs/gatewayAPI"

// GatewayRoute is the plugin's configuration: the HTTPRoute whose backend
// weights carry the canary's share.
type GatewayRoute struct {
	HTTPRoute string `json:"httpRoute"`
	Namespace string `json:"namespace,omitempty"`
}

// Step is one canary step.
type Step struct {
	SetWeight      *int32          `json:"setWeight,omitempty"`
	Pause          *Pause          `json:"pause,omitempty"`
	Analysis       *Analysis       `json:"analysis,omitempty"`
	SetCanaryScale *SetCanaryScale `json:"setCanaryScale,omitempty"`
	// Steps the agent does not run are named in the error.
	Experiment     json.RawMessage `json:"experiment,omitempty"`
	SetHeaderRoute json.RawMessage `json:"setHeaderRoute,omitempty"`
	SetMirrorRoute json.RawMessage `json:"setMirrorRoute,omitempty"`
	Plugin         json.RawMessage `json:"plugin,omitempty"`
}

// Pause waits for Duration, or without one for a promote.
type Pause struct {
	Duration *intstr.IntOrString `json:"duration,omitempty"`
}

// SetCanaryScale sets the canary's size apart from its traffic weight.
type SetCanaryScale struct {
	Weight             *int32 `json:"weight,omitempty"`
	Replicas           *int32 `json:"replicas,omitempty"`
	MatchTrafficWeight bool   `json:"matchTrafficWeight,omitempty"`
}

// Analysis runs templates with args.
type Analysis struct {
	Templates []TemplateRef     `json:"templates"`
	Args      []Arg             `json:"args,omitempty"`
	DryRun    []analysis.DryRun `json:"dryRun,omitempty"`
}

// BackgroundAnalysis runs beside the steps from StartingStep on.
type BackgroundAnalysis struct {
	Analysis     `json:",inline"`
	StartingStep *int32 `json:"startingStep,omitempty"`
}

// TemplateRef names an AnalysisTemplate or (ClusterScope) a
// ClusterAnalysisTemplate.
type TemplateRef struct {
	TemplateName string `json:"templateName"`
	ClusterScope bool   `json:"clusterScope,omitempty"`
}

// Arg is a rollout's argument to its templates.
type Arg struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *ArgValueFrom `json:"valueFrom,omitempty"`
}

// ArgValueFrom takes a value from the rollout.
type ArgValueFrom struct {
	PodTemplateHashValue *string            `json:"podTemplateHashValue,omitempty"`
	FieldRef             *analysis.FieldRef `json:"fieldRef,omitempty"`
}

// BlueGreen is strategy.blueGreen.
type BlueGreen struct {
	ActiveService              string    `json:"activeService"`
	PreviewService             string    `json:"previewService,omitempty"`
	AutoPromotionEnabled       *bool     `json:"autoPromotionEnabled,omitempty"`
	AutoPromotionSeconds       int32     `json:"autoPromotionSeconds,omitempty"`
	PrePromotionAnalysis       *Analysis `json:"prePromotionAnalysis,omitempty"`
	PostPromotionAnalysis      *Analysis `json:"postPromotionAnalysis,omitempty"`
	ScaleDownDelaySeconds      *int32    `json:"scaleDownDelaySeconds,omitempty"`
	AbortScaleDownDelaySeconds *int32    `json:"abortScaleDownDelaySeconds,omitempty"`
	PreviewReplicaCount        *int32    `json:"previewReplicaCount,omitempty"`
}

// Status is a Rollout's status, as Argo Rollouts writes it.
type Status struct {
	Abort              bool             `json:"abort,omitempty"`
	AbortedAt          *metav1.Time     `json:"abortedAt,omitempty"`
	PauseConditions    []PauseCondition `json:"pauseConditions,omitempty"`
	ControllerPause    bool             `json:"controllerPause,omitempty"`
	PromoteFull        bool             `json:"promoteFull,omitempty"`
	CurrentPodHash     string           `json:"currentPodHash,omitempty"`
	StableRS           string           `json:"stableRS,omitempty"`
	CurrentStepIndex   *int32           `json:"currentStepIndex,omitempty"`
	Replicas           int32            `json:"replicas,omitempty"`
	HPAReplicas        int32            `json:"HPAReplicas,omitempty"`
	UpdatedReplicas    int32            `json:"updatedReplicas,omitempty"`
	ReadyReplicas      int32            `json:"readyReplicas,omitempty"`
	AvailableReplicas  int32            `json:"availableReplicas,omitempty"`
	Selector           string           `json:"selector,omitempty"`
	ObservedGeneration string           `json:"observedGeneration,omitempty"`
	// WorkloadObservedGeneration is the generation of the workloadRef's
	// Deployment the status reflects.
	WorkloadObservedGeneration string          `json:"workloadObservedGeneration,omitempty"`
	Phase                      string          `json:"phase,omitempty"`
	Message                    string          `json:"message,omitempty"`
	Canary                     CanaryStatus    `json:"canary,omitempty"`
	BlueGreen                  BlueGreenStatus `json:"blueGreen,omitempty"`
	Conditions                 []Condition     `json:"conditions,omitempty"`
}

// PauseCondition says why and since when a rollout is paused.
type PauseCondition struct {
	Reason    string      `json:"reason"`
	StartTime metav1.Time `json:"startTime"`
}

// The pause reasons, as Argo Rollouts names them.
const (
	pauseCanaryStep   = "CanaryPauseStep"
	pauseInconclusive = "InconclusiveAnalysis"
	pauseBlueGreen    = "BlueGreenPause"
)

// CanaryStatus is status.canary.
type CanaryStatus struct {
	CurrentStepAnalysisRunStatus       *RunStatus `json:"currentStepAnalysisRunStatus,omitempty"`
	CurrentBackgroundAnalysisRunStatus *RunStatus `json:"currentBackgroundAnalysisRunStatus,omitempty"`
	Weights                            *Weights   `json:"weights,omitempty"`
}

// BlueGreenStatus is status.blueGreen.
type BlueGreenStatus struct {
	ActiveSelector                 string     `json:"activeSelector,omitempty"`
	PreviewSelector                string     `json:"previewSelector,omitempty"`
	ScaleUpPreviewCheckPoint       bool       `json:"scaleUpPreviewCheckPoint,omitempty"`
	PrePromotionAnalysisRunStatus  *RunStatus `json:"prePromotionAnalysisRunStatus,omitempty"`
	PostPromotionAnalysisRunStatus *RunStatus `json:"postPromotionAnalysisRunStatus,omitempty"`
}

// RunStatus names an AnalysisRun and its phase.
type RunStatus struct {
	Name    string         `json:"name"`
	Status  analysis.Phase `json:"status"`
	Message string         `json:"message,omitempty"`
}

// Weights are the traffic shares of canary and stable.
type Weights struct {
	Canary WeightDestination `json:"canary"`
	Stable WeightDestination `json:"stable"`
}

// WeightDestination is one side's share.
type WeightDestination struct {
	PodTemplateHash string `json:"podTemplateHash,omitempty"`
	Weight          int32  `json:"weight"`
}

// The phases a Rollout's status shows.
const (
	PhaseHealthy     = "Healthy"
	PhaseProgressing = "Progressing"
	PhasePaused      = "Paused"
	PhaseDegraded    = "Degraded"
)

// parse reads a Rollout and checks what the agent needs of its spec; the
// error names the field.
func parse(obj *unstructured.Unstructured) (*Rollout, error) {
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	var ro Rollout
	if err := json.Unmarshal(data, &ro); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	spec, _, _ := unstructured.NestedMap(obj.Object, "spec")
	if err := unsupportedField(spec); err != nil {
		return &ro, err
	}
	return &ro, ro.validate()
}

func (ro *Rollout) validate() error {
	s := &ro.Spec
	if s.Selector == nil && s.WorkloadRef == nil {
		return fmt.Errorf("spec.selector is required")
	}
	if s.Template == nil && s.WorkloadRef == nil {
		return fmt.Errorf("spec.template or spec.workloadRef is required")
	}
	if ref := s.WorkloadRef; ref != nil {
		if ref.Kind != "Deployment" || ref.Name == "" {
			return fmt.Errorf("spec.workloadRef: only a named Deployment is supported")
		}
		switch ref.ScaleDown {
		case "", scaleDownNever, scaleDownOnSuccess, scaleDownProgressively:
		default:
			return fmt.Errorf("spec.workloadRef.scaleDown: %q is not one of never, onsuccess and progressively", ref.ScaleDown)
		}
		if templateHasMetadata(s.Template) {
			// As in Argo Rollouts: the template comes from the workload.
			return fmt.Errorf("spec.template must be empty for a Rollout with a workloadRef")
		}
	}
	switch c, bg := s.Strategy.Canary, s.Strategy.BlueGreen; {
	case c != nil && bg != nil:
		return fmt.Errorf("spec.strategy: set one of canary and blueGreen")
	case c != nil:
		for i, st := range c.Steps {
			if err := st.validate(); err != nil {
				return fmt.Errorf("spec.strategy.canary.steps[%d]: %w", i, err)
			}
		}
		if c.CanaryService != "" && c.CanaryService == c.StableService {
			return fmt.Errorf("spec.strategy.canary: canaryService and stableService must differ")
		}
		if _, err := c.router(); err != nil {
			return fmt.Errorf("spec.strategy.canary.trafficRouting: %w", err)
		}
		if c.Analysis != nil && len(c.Analysis.Templates) == 0 {
			return fmt.Errorf("spec.strategy.canary.analysis.templates: required")
		}
		// Argo Rollouts' own checks, with its words.
		if bothZero(c.MaxSurge, c.MaxUnavailable) {
			return fmt.Errorf("spec.strategy.canary.maxSurge: MaxSurge and MaxUnavailable both can not be zero")
		}
		if c.TrafficRouting == nil {
			for i, st := range c.Steps {
				if st.SetCanaryScale != nil {
					return fmt.Errorf("spec.strategy.canary.steps[%d].setCanaryScale: SetCanaryScale requires TrafficRouting to be set", i)
				}
			}
			if c.ScaleDownDelaySeconds != nil {
				return fmt.Errorf("spec.strategy.canary.scaleDownDelaySeconds: Canary scaleDownDelaySeconds can only be used with traffic routing")
			}
			if c.DynamicStableScale {
				return fmt.Errorf("spec.strategy.canary.dynamicStableScale: Canary dynamicStableScale can only be used with traffic routing")
			}
		}
		if c.DynamicStableScale && c.ScaleDownDelaySeconds != nil {
			return fmt.Errorf("spec.strategy.canary.dynamicStableScale: Canary dynamicStableScale cannot be used with scaleDownDelaySeconds")
		}
	case bg != nil:
		if bg.ActiveService == "" {
			return fmt.Errorf("spec.strategy.blueGreen.activeService is required")
		}
		if bg.ActiveService == bg.PreviewService {
			return fmt.Errorf("spec.strategy.blueGreen: activeService and previewService must differ")
		}
	default:
		return fmt.Errorf("spec.strategy: set canary or blueGreen")
	}
	return nil
}

// bothZero reports whether maxSurge and maxUnavailable are both set to
// zero, which Argo Rollouts refuses.
func bothZero(surge, unavailable *intstr.IntOrString) bool {
	zero := func(v *intstr.IntOrString) bool {
		if v == nil {
			return false
		}
		if v.Type == intstr.Int {
			return v.IntVal == 0
		}
		n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
		return err == nil && n == 0
	}
	return zero(surge) && zero(unavailable)
}

// templateHasMetadata reports whether a pod template sets labels or
// annotations, Argo Rollouts' test of a template that is not empty.
func templateHasMetadata(t map[string]any) bool {
	labels, _, _ := unstructured.NestedMap(t, "metadata", "labels")
	annotations, _, _ := unstructured.NestedMap(t, "metadata", "annotations")
	return len(labels)+len(annotations) > 0
}

func (st *Step) validate() error {
	var set []string
	if st.SetWeight != nil {
		set = append(set, "setWeight")
		if *st.SetWeight < 0 || *st.SetWeight > 100 {
			return fmt.Errorf("setWeight %d is not within 0-100", *st.SetWeight)
		}
	}
	if st.Pause != nil {
		set = append(set, "pause")
		if _, err := pauseDuration(st.Pause); err != nil {
			return err
		}
	}
	if st.Analysis != nil {
		set = append(set, "analysis")
		if len(st.Analysis.Templates) == 0 {
			return fmt.Errorf("analysis.templates: required")
		}
	}
	if st.SetCanaryScale != nil {
		set = append(set, "setCanaryScale")
	}
	for name, raw := range map[string]json.RawMessage{"experiment": st.Experiment, "setHeaderRoute": st.SetHeaderRoute, "setMirrorRoute": st.SetMirrorRoute, "plugin": st.Plugin} {
		if len(raw) > 0 {
			return fmt.Errorf("%s steps are not supported by the agent's rollouts controller", name)
		}
	}
	if len(set) != 1 {
		return fmt.Errorf("a step sets exactly one of setWeight, pause, analysis and setCanaryScale (has %d)", len(set))
	}
	return nil
}

// pauseDuration is a pause's duration: seconds as a number, or a string
// like "30s", "5m", "1h"; 0 without one (wait for a promote).
func pauseDuration(p *Pause) (time.Duration, error) {
	if p.Duration == nil {
		return 0, nil
	}
	if p.Duration.Type == intstr.Int {
		return time.Duration(p.Duration.IntValue()) * time.Second, nil
	}
	if n, err := strconv.Atoi(p.Duration.StrVal); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := analysis.Duration(p.Duration.StrVal).Get()
	if err != nil {
		return 0, fmt.Errorf("pause.duration: %w", err)
	}
	return d, nil
}

// router is what the canary's weights go to, or nil without traffic
// routing.
func (c *Canary) router() (router, error) {
	tr := c.TrafficRouting
	if tr == nil {
		return nil, nil
	}
	if c.CanaryService == "" || c.StableService == "" {
		return nil, fmt.Errorf("canaryService and stableService are required with traffic routing")
	}
	if tr.Nginx != nil {
		if len(tr.Plugins) > 0 {
			return nil, fmt.Errorf("set one of nginx and plugins")
		}
		if len(tr.Nginx.ingresses()) == 0 {
			return nil, fmt.Errorf("nginx.stableIngress is required")
		}
		return tr.Nginx, nil
	}
	route, err := c.gatewayRoute()
	if err != nil || route == nil {
		return nil, err // never a nil *GatewayRoute inside a router
	}
	return route, nil
}

// gatewayRoute is the Gateway API route the canary's weights go to, or nil
// when the canary does not route through the Gateway API plugin.
func (c *Canary) gatewayRoute() (*GatewayRoute, error) {
	if c.TrafficRouting == nil || c.TrafficRouting.Nginx != nil {
		return nil, nil
	}
	raw, ok := c.TrafficRouting.Plugins[gatewayPlugin]
	if !ok || len(c.TrafficRouting.Plugins) != 1 {
		return nil, fmt.Errorf("the routers supported are nginx and the %s plugin", gatewayPlugin)
	}
	var r GatewayRoute
	if err := json.Unmarshal(raw, &r); err != nil || r.HTTPRoute == "" {
		return nil, fmt.Errorf("plugins.%s.httpRoute is required", gatewayPlugin)
	}
	return &r, nil
}

// replicas is spec.replicas, 1 when unset as in Argo Rollouts.
func (ro *Rollout) replicas() int32 {
	if ro.Spec.Replicas == nil {
		return 1
	}
	return *ro.Spec.Replicas
}
