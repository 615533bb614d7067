package rollouts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// WaveAnalysisLabel marks the AnalysisRuns that gate fleet rollouts'
// waves with the application they are about (its flotilla.dev/app label
// value). It is deliberately not that ownership label: a run is not one of
// the application's objects, so the application's prune never deletes it,
// its watches never see it, and its health does not count it.
const WaveAnalysisLabel = "flotilla.dev/wave-analysis"

// Annotations saying what a wave's run is for, for people and tools
// reading the cluster.
const (
	waveRolloutAnnotation = "flotilla.dev/fleet-rollout"
	waveAnnotation        = "flotilla.dev/fleet-wave"
	waveHistoryAnnotation = "flotilla.dev/history-id"
)

// waveTemplateRetry is how often a wave analysis whose template does not
// exist yet (another application may bring it) looks for it again.
const waveTemplateRetry = 30 * time.Second

// WaveAnalyses run the analyses that gate fleet rollouts' waves: one
// AnalysisRun per application, rollout, wave and history id, in the
// application's destination namespace, made from the wave's templates and
// args and measured with the same engine as a Rollout's analysis. The run
// is the truth: an agent restarted mid-analysis continues it, and a run
// that completed is never started again.
type WaveAnalyses struct {
	Client dynamic.Interface
	// Measurer takes the measurements (analysis.Providers{} in production).
	Measurer analysis.Measurer
	// History is how many finished runs of each application's earlier
	// desired states are kept, per outcome (successful, unsuccessful), as
	// a Rollout keeps its earlier revisions' runs.
	History int
	// Now is the clock the measurements are timed with (time.Now when nil).
	Now func() time.Time
}

// NewWaveAnalyses runs wave analyses through client with the built-in
// providers.
func NewWaveAnalyses(client dynamic.Interface) *WaveAnalyses {
	return &WaveAnalyses{Client: client, Measurer: analysis.Providers{}, History: runHistoryLimit}
}

func (w *WaveAnalyses) now() time.Time {
	if w.Now == nil {
		return time.Now()
	}
	return w.Now()
}

// Run advances the run of ds's wave analysis: it takes the measurements
// due now and returns the run's status and when it next needs a look
// (zero: it completed, or ds has no wave analysis, for which the status is
// nil). A run that does not exist yet is created only with start (the
// application is Synced and Healthy at ds); without, the status is nil.
// A template that does not exist holds the analysis Pending, looked for
// again every 30 s; a wave analysis that cannot run (an arg without a
// value) ends as an Error run, and one without a destination namespace to
// run in is reported Error. The error is the API server's: the caller
// tries again later.
func (w *WaveAnalyses) Run(ctx context.Context, ds *flotillav1.DesiredState, start bool) (*flotillav1.WaveAnalysisStatus, time.Time, error) {
	wave := ds.GetWave()
	if wave.GetAnalysis() == nil {
		return nil, time.Time{}, nil
	}
	name := waveRunName(ds)
	out := &flotillav1.WaveAnalysisStatus{Rollout: wave.GetRollout(), Wave: wave.GetWave(), HistoryId: ds.GetHistoryId(),
		Analysis: &flotillav1.AnalysisStatus{Name: name, Phase: string(analysis.Pending)}}
	namespace := ds.GetDestination().GetNamespace()
	if namespace == "" {
		if !start {
			return nil, time.Time{}, nil
		}
		out.Analysis.Phase, out.Analysis.Message = string(analysis.Error), "the application has no destination namespace to run its wave analysis in"
		return out, time.Time{}, nil
	}
	runs := runStore{client: w.Client, namespace: namespace}
	obj, err := runs.ri().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && !start:
		return nil, time.Time{}, nil
	case apierrors.IsNotFound(err):
		obj, err = w.create(ctx, runs, name, ds)
		if err != nil && apierrors.IsNotFound(err) {
			out.Analysis.Message = "waiting for " + err.Error()
			return out, w.now().Add(waveTemplateRetry), nil
		}
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	status, next, err := runs.advance(ctx, obj, w.now(), w.Measurer, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	if status.Phase != "" {
		out.Analysis.Phase = string(status.Phase)
	}
	spec, _ := templateSpec(obj) // advance has read it: it parses
	out.Analysis.Message, out.Analysis.Measurements = status.Message, measurementsOf(&spec, status)
	return out, next, nil
}

// create creates ds's wave run from its templates and args. One that
// cannot run is created ended, as Error with the reason, so it is not
// tried again; a template that does not exist is an error
// (apierrors.IsNotFound) and nothing is created.
func (w *WaveAnalyses) create(ctx context.Context, runs runStore, name string, ds *flotillav1.DesiredState) (*unstructured.Unstructured, error) {
	a := ds.GetWave().GetAnalysis()
	refs := make([]TemplateRef, 0, len(a.GetTemplates()))
	for _, t := range a.GetTemplates() {
		refs = append(refs, TemplateRef{TemplateName: t.GetTemplateName(), ClusterScope: t.GetClusterScope()})
	}
	templates, err := runs.templates(ctx, refs)
	if err != nil {
		return nil, err
	}
	values, secrets := map[string]string{}, map[string]analysis.SecretKeyRef{}
	for _, arg := range a.GetArgs() {
		if arg.GetSecretName() != "" {
			secrets[arg.GetName()] = analysis.SecretKeyRef{Name: arg.GetSecretName(), Key: arg.GetSecretKey()}
			continue
		}
		values[arg.GetName()] = arg.GetValue()
	}
	run := &unstructured.Unstructured{Object: map[string]any{}}
	run.SetName(name)
	run.SetLabels(map[string]string{WaveAnalysisLabel: appkey.LabelValue(ds.GetApp())})
	run.SetAnnotations(map[string]string{waveRolloutAnnotation: ds.GetWave().GetRollout(),
		waveAnnotation: strconv.Itoa(int(ds.GetWave().GetWave())), waveHistoryAnnotation: strconv.FormatUint(ds.GetHistoryId(), 10)})
	spec, mergeErr := analysis.Merge(templates, values, secrets)
	created, err := runs.create(ctx, run, spec)
	if err != nil || mergeErr == nil {
		return created, err
	}
	status := &analysis.Status{Phase: analysis.Error, Message: mergeErr.Error(), StartedAt: &metav1.Time{Time: w.now()}}
	if err := runs.write(ctx, created, status); err != nil {
		return nil, err
	}
	created.Object["status"], err = toMap(status)
	return created, err
}

// waveRunName is the name of ds's wave run: one per application, fleet
// rollout, wave and history id, the same for every agent that looks.
func waveRunName(ds *flotillav1.DesiredState) string {
	wave := ds.GetWave()
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d", ds.GetApp(), wave.GetRollout(), wave.GetWave(), ds.GetHistoryId()))
	return appkey.ObjectName("flotilla-wave-", ds.GetApp()+"-"+hex.EncodeToString(sum[:5]))
}

// Expire ends the runs of ds's application that are not ds's (a newer
// desired state took over: their measurements stop, as a Rollout's runs
// stop when it moves on) and deletes the oldest finished ones beyond
// History per outcome. ds's own run is left alone.
func (w *WaveAnalyses) Expire(ctx context.Context, ds *flotillav1.DesiredState) error {
	list, err := w.Client.Resource(runGVR).Namespace("").List(ctx, metav1.ListOptions{LabelSelector: WaveAnalysisLabel + "=" + appkey.LabelValue(ds.GetApp())})
	if apierrors.IsNotFound(err) {
		return nil // no AnalysisRun CRD: no runs
	}
	if err != nil {
		return fmt.Errorf("list wave AnalysisRuns: %w", err)
	}
	current := ""
	if ds.GetWave().GetAnalysis() != nil {
		current = ds.GetDestination().GetNamespace() + "/" + waveRunName(ds)
	}
	var runs []runInfo
	for i := range list.Items {
		obj := &list.Items[i]
		key := obj.GetNamespace() + "/" + obj.GetName()
		if key == current {
			continue
		}
		spec, status, err := readRun(obj)
		if err != nil {
			continue
		}
		if !status.Phase.Completed() {
			analysis.Terminate(ctx, spec, status, w.now(), runJobs{client: w.Client, run: obj})
			status.Message = "a newer desired state took over: " + status.Message
			if err := (runStore{client: w.Client, namespace: obj.GetNamespace()}).write(ctx, obj, status); err != nil {
				return err
			}
		}
		runs = append(runs, runInfo{name: key, succeeded: status.Phase == analysis.Successful, finished: true, created: obj.GetCreationTimestamp().Time})
	}
	for _, key := range expiredRuns(runs, nil, w.History, w.History) {
		namespace, name, _ := strings.Cut(key, "/")
		err := w.Client.Resource(runGVR).Namespace(namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old AnalysisRun %s: %w", key, err)
		}
	}
	return nil
}
