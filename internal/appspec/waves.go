package appspec

import (
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// WavesAnnotation on an ApplicationSet or an Application holds its Waves
// as YAML (docs/fleet-rollouts.md).
const WavesAnnotation = "flotilla.dev/waves"

// Waves is how a change rolls out across the fleet: wave after wave of
// clusters, each passing its gate before the next is released. The waves
// are an ApplicationSet's RollingSync steps, or else the distinct values
// of ClusterLabel among the target clusters; without either, one wave.
type Waves struct {
	// ClusterLabel is the cluster label whose values make the waves (for
	// an Application targeting several clusters, or an ApplicationSet
	// without RollingSync).
	ClusterLabel string `json:"clusterLabel,omitempty"`
	// AutoRollback gives the clusters a failed rollout updated their
	// previous desired state back.
	AutoRollback bool `json:"autoRollback,omitempty"`
	// Gates are the waves' gates by index: the i-th RollingSync step's,
	// or the i-th ClusterLabel value's.
	Gates []WaveGate `json:"gates,omitempty"`
}

// WaveGate is what a wave must pass before the next wave is released.
type WaveGate struct {
	// BakeTime is how long every cluster of the wave must stay Healthy.
	// It is written as a Go duration ("2m"), 24h at most.
	BakeTime time.Duration `json:"-"`
	// MaxUpdate is how many of the wave's clusters are released at a
	// time (see MaxUpdate); ClusterLabel waves only, as RollingSync
	// steps have their own.
	MaxUpdate *intstr.IntOrString `json:"maxUpdate,omitempty"`
	Analysis  *WaveAnalysis       `json:"analysis,omitempty"`
	// MinSuccessful is how many of the wave's clusters, as a number or a
	// percentage, must pass the analysis; all when unset.
	MinSuccessful *intstr.IntOrString `json:"minSuccessful,omitempty"`
	// Approval holds the next wave until an operator promotes this one.
	Approval bool `json:"approval,omitempty"`
}

// WaveAnalysis is the analysis run in each cluster of a wave.
type WaveAnalysis struct {
	Templates []WaveTemplateRef `json:"templates,omitempty"`
	Args      []WaveArg         `json:"args,omitempty"`
}

// WaveTemplateRef names an AnalysisTemplate, or with ClusterScope a
// ClusterAnalysisTemplate.
type WaveTemplateRef struct {
	TemplateName string `json:"templateName,omitempty"`
	ClusterScope bool   `json:"clusterScope,omitempty"`
}

// WaveArg is an argument of the analysis: a value, or a key of a Secret.
type WaveArg struct {
	Name      string            `json:"name,omitempty"`
	Value     string            `json:"value,omitempty"`
	ValueFrom *WaveArgValueFrom `json:"valueFrom,omitempty"`
}

// WaveArgValueFrom is where an argument's value comes from.
type WaveArgValueFrom struct {
	SecretKeyRef *SecretKeyRef `json:"secretKeyRef,omitempty"`
}

// SecretKeyRef is a key of a Secret.
type SecretKeyRef struct {
	Name string `json:"name,omitempty"`
	Key  string `json:"key,omitempty"`
}

// Gate is the i-th wave's gate: the zero gate (none) past the gates
// listed, or when w is nil.
func (w *Waves) Gate(i int) WaveGate {
	if w == nil || i < 0 || i >= len(w.Gates) {
		return WaveGate{}
	}
	return w.Gates[i]
}
