package rollouts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/jsonpath"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
)

// Labels of the AnalysisRuns a rollout starts.
const runTypeLabel = "rollout-type"

// The kinds of run, as Argo Rollouts labels them.
const (
	runStep       = "Step"
	runBackground = "Background"
	runPre        = "PrePromotion"
	runPost       = "PostPromotion"
)

// analyse makes sure the AnalysisRun name exists for the current revision
// and advances it: it returns the run's status. A run is created from the
// templates once; after that, its own spec and status are the truth, so a
// restarted agent continues its measurements.
func (r *rolloutCtx) analyse(ctx context.Context, name, kind string, a *Analysis) (*RunStatus, error) {
	runs := r.runStore()
	obj, err := runs.ri().Get(ctx, name, metav1.GetOptions{})
	if err == nil && r.st.AbortedAt != nil && !r.st.AbortedAt.Before(ptrTime(obj.GetCreationTimestamp())) {
		// A run from before an abort: a retry starts the analysis afresh.
		if err := runs.ri().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		err = apierrors.NewNotFound(runGVR.GroupResource(), name)
	}
	if apierrors.IsNotFound(err) {
		obj, err = r.createRun(ctx, name, kind, a)
	}
	if err != nil {
		return nil, err
	}
	status, next, err := runs.advance(ctx, obj, r.now, r.c.opts.Measurer, r.measured(ctx, name))
	if err != nil {
		return nil, err
	}
	r.wakeAt(next)
	return &RunStatus{Name: name, Status: status.Phase, Message: status.Message}, nil
}

// runStore is the AnalysisRuns of the rollout's namespace.
func (r *rolloutCtx) runStore() runStore {
	return runStore{client: r.c.client, namespace: r.obj.GetNamespace()}
}

func (r *rolloutCtx) createRun(ctx context.Context, name, kind string, a *Analysis) (*unstructured.Unstructured, error) {
	runs := r.runStore()
	templates, err := runs.templates(ctx, a.Templates)
	if err != nil {
		return nil, err
	}
	args, err := r.args(a.Args)
	if err != nil {
		return nil, err
	}
	spec, err := analysis.Merge(templates, args, nil)
	if err != nil {
		return nil, err
	}
	spec.DryRun = append(spec.DryRun, a.DryRun...)
	run := &unstructured.Unstructured{Object: map[string]any{}}
	run.SetName(name)
	run.SetLabels(map[string]string{HashLabel: r.hash, runTypeLabel: kind})
	run.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(r.obj, r.obj.GroupVersionKind())})
	return runs.create(ctx, run, spec)
}

// args resolves the rollout's args: values, pod-template hashes (Stable,
// Latest) and fields of the Rollout.
func (r *rolloutCtx) args(in []Arg) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for _, a := range in {
		switch {
		case a.ValueFrom == nil:
			out[a.Name] = a.Value
		case a.ValueFrom.PodTemplateHashValue != nil:
			switch *a.ValueFrom.PodTemplateHashValue {
			case "Stable":
				out[a.Name] = r.st.StableRS
			case "Latest":
				out[a.Name] = r.hash
			default:
				return nil, fmt.Errorf("arg %q: podTemplateHashValue must be Stable or Latest", a.Name)
			}
		case a.ValueFrom.FieldRef != nil:
			jp := jsonpath.New(a.Name)
			if err := jp.Parse("{." + strings.TrimPrefix(a.ValueFrom.FieldRef.FieldPath, ".") + "}"); err != nil {
				return nil, fmt.Errorf("arg %q: fieldRef.fieldPath: %w", a.Name, err)
			}
			var b strings.Builder
			if err := jp.Execute(&b, r.obj.Object); err != nil {
				return nil, fmt.Errorf("arg %q: fieldRef.fieldPath: %w", a.Name, err)
			}
			out[a.Name] = b.String()
		default:
			return nil, fmt.Errorf("arg %q: valueFrom needs podTemplateHashValue or fieldRef", a.Name)
		}
	}
	return out, nil
}

// terminateRuns ends the rollout's runs still going, except keep: their
// step is over, the revision was promoted or aborted.
func (r *rolloutCtx) terminateRuns(ctx context.Context, keep ...string) error {
	list, err := r.c.client.Resource(runGVR).Namespace(r.obj.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: runTypeLabel})
	if err != nil {
		return err
	}
	for i := range list.Items {
		obj := &list.Items[i]
		if ref := metav1.GetControllerOf(obj); ref == nil || ref.UID != r.obj.GetUID() || slices.Contains(keep, obj.GetName()) {
			continue
		}
		spec, status, err := readRun(obj)
		if err != nil || status.Phase.Completed() {
			continue
		}
		analysis.Terminate(ctx, spec, status, r.now, r.jobs(obj))
		if err := r.runStore().write(ctx, obj, status); err != nil {
			return err
		}
	}
	return nil
}

// runName is the name of a rollout's run: rollout, revision hash and what
// it is for ("2" for step 2, "pre", "post", "bg").
func (r *rolloutCtx) runName(what string) string {
	return fmt.Sprintf("%s-%s-%s", r.obj.GetName(), r.hash, what)
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// runHistoryLimit is how many finished runs of earlier revisions are kept
// per outcome unless spec.analysis says otherwise, as Argo Rollouts'
// successful- and unsuccessfulRunHistoryLimit default to.
const runHistoryLimit = 5

// runHistoryLimits are spec.analysis' limits: successful runs kept, and
// unsuccessful ones.
func (ro *Rollout) runHistoryLimits() (successful, unsuccessful int) {
	successful, unsuccessful = runHistoryLimit, runHistoryLimit
	if a := ro.Spec.Analysis; a != nil {
		if a.SuccessfulRunHistoryLimit != nil {
			successful = max(int(*a.SuccessfulRunHistoryLimit), 0)
		}
		if a.UnsuccessfulRunHistoryLimit != nil {
			unsuccessful = max(int(*a.UnsuccessfulRunHistoryLimit), 0)
		}
	}
	return successful, unsuccessful
}

// runInfo is what the run history limit looks at.
type runInfo struct {
	name      string
	hash      string
	succeeded bool
	finished  bool
	created   time.Time
}

// expiredRuns names the runs to delete: finished runs of revisions other
// than keep, beyond the newest successful and unsuccessful ones.
func expiredRuns(runs []runInfo, keep map[string]bool, successful, unsuccessful int) []string {
	slices.SortFunc(runs, func(a, b runInfo) int { return b.created.Compare(a.created) })
	var out []string
	seen := map[bool]int{}
	limit := map[bool]int{true: successful, false: unsuccessful}
	for _, run := range runs {
		if !run.finished || keep[run.hash] {
			continue
		}
		seen[run.succeeded]++
		if seen[run.succeeded] > limit[run.succeeded] {
			out = append(out, run.name)
		}
	}
	return out
}

// cleanupRuns deletes the rollout's expired runs.
func (r *rolloutCtx) cleanupRuns(ctx context.Context) error {
	ri := r.c.client.Resource(runGVR).Namespace(r.obj.GetNamespace())
	list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: runTypeLabel})
	if err != nil {
		return err
	}
	var runs []runInfo
	for i := range list.Items {
		obj := &list.Items[i]
		if ref := metav1.GetControllerOf(obj); ref == nil || ref.UID != r.obj.GetUID() {
			continue
		}
		phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
		runs = append(runs, runInfo{name: obj.GetName(), hash: obj.GetLabels()[HashLabel], succeeded: phase == string(analysis.Successful),
			finished: analysis.Phase(phase).Completed(), created: obj.GetCreationTimestamp().Time})
	}
	successful, unsuccessful := r.ro.runHistoryLimits()
	for _, name := range expiredRuns(runs, map[string]bool{r.hash: true, r.st.StableRS: true}, successful, unsuccessful) {
		if err := ri.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old AnalysisRun %s: %w", name, err)
		}
	}
	return nil
}
