package rollouts

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/rollouts/analysis"
)

// The labels, annotations and measurement metadata of the job provider's
// Jobs, as Argo Rollouts names them.
const (
	jobRunUIDLabel       = "analysisrun.argoproj.io/uid"
	jobRunNameAnnotation = "analysisrun.argoproj.io/name"
	jobRunNSAnnotation   = "analysisrun.argoproj.io/namespace"
	jobMetricAnnotation  = "analysisrun.argoproj.io/metric-name"
	jobNameKey           = "job-name"
	jobNamespaceKey      = "job-namespace"
	maxJobNameLength     = 63 // a Job's name is its pods' job-name label value
)

var (
	jobGVR = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	podGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// terminalWaitingReasons are the container states in which a Job's pod
// will never run, which Argo Rollouts takes as an Inconclusive
// measurement rather than waiting forever.
var terminalWaitingReasons = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true}

// runJobs is the job provider of one AnalysisRun: its measurements'
// Jobs live in the run's namespace and are owned by it, so they go with
// the run.
type runJobs struct {
	client dynamic.Interface
	run    *unstructured.Unstructured
}

func (r *rolloutCtx) jobs(run *unstructured.Unstructured) analysis.Jobs {
	return runJobs{client: r.c.client, run: run}
}

func (j runJobs) ri() dynamic.ResourceInterface {
	return j.client.Resource(jobGVR).Namespace(j.run.GetNamespace())
}

// jobName is Argo Rollouts' name of a measurement's Job:
// <run UID>.<metric>.<id>, the metric name cut to keep it in 63
// characters.
func jobName(uid, metric string, id int) string {
	suffix := fmt.Sprintf(".%d", id)
	if over := len(uid) + 1 + len(metric) + len(suffix) - maxJobNameLength; over > 0 {
		metric = metric[:max(len(metric)-over, 0)]
	}
	return uid + "." + metric + suffix
}

// Start creates the Job of a measurement from the metric's job spec, as
// Argo Rollouts builds it: the metric's labels and annotations, the run's
// UID label on the Job and its pods, annotations naming the run and
// metric, and the run as its controller.
func (j runJobs) Start(ctx context.Context, metric string, id int, spec *analysis.Job) (map[string]string, error) {
	jobSpec := runtime.DeepCopyJSON(spec.Spec)
	podLabels, _, _ := unstructured.NestedStringMap(jobSpec, "template", "metadata", "labels")
	if podLabels == nil {
		podLabels = map[string]string{}
	}
	podLabels[jobRunUIDLabel] = string(j.run.GetUID())
	if err := unstructured.SetNestedStringMap(jobSpec, podLabels, "template", "metadata", "labels"); err != nil {
		return nil, fmt.Errorf("job.spec.template.metadata.labels: %w", err)
	}
	job := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "batch/v1", "kind": "Job", "spec": jobSpec}}
	job.SetName(jobName(string(j.run.GetUID()), metric, id))
	job.SetNamespace(j.run.GetNamespace())
	labels := map[string]string{}
	for k, v := range spec.Metadata.Labels {
		labels[k] = v
	}
	labels[jobRunUIDLabel] = string(j.run.GetUID())
	annotations := map[string]string{}
	for k, v := range spec.Metadata.Annotations {
		annotations[k] = v
	}
	annotations[jobRunNameAnnotation] = j.run.GetName()
	annotations[jobRunNSAnnotation] = j.run.GetNamespace()
	annotations[jobMetricAnnotation] = metric
	job.SetLabels(labels)
	job.SetAnnotations(annotations)
	job.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(j.run, j.run.GroupVersionKind())})

	created, err := j.ri().Create(ctx, job, metav1.CreateOptions{FieldManager: fieldManager})
	if apierrors.IsAlreadyExists(err) {
		// Created before (the status write that recorded it failed): take
		// it if it is this run's.
		existing, getErr := j.ri().Get(ctx, job.GetName(), metav1.GetOptions{})
		if getErr == nil {
			if owner := metav1.GetControllerOf(existing); owner != nil && owner.UID == j.run.GetUID() {
				created, err = existing, nil
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create Job %s: %w", job.GetName(), err)
	}
	return map[string]string{jobNameKey: created.GetName(), jobNamespaceKey: created.GetNamespace()}, nil
}

// Check reads the measurement's Job: Complete is Successful and Failed is
// Failed, as Argo Rollouts reads them; a pod stuck pulling its image is
// Inconclusive; anything else is still Running.
func (j runJobs) Check(ctx context.Context, metadata map[string]string) (analysis.Phase, string, error) {
	name, err := jobOf(metadata)
	if err != nil {
		return "", "", err
	}
	job, err := j.ri().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("job %s: %w", name, err)
	}
	conditions, _, _ := unstructured.NestedSlice(job.Object, "status", "conditions")
	phase := analysis.Running
	for _, c := range conditions {
		cond, _ := c.(map[string]any)
		status, _ := cond["status"].(string)
		if status != "True" {
			continue
		}
		switch cond["type"] {
		case "Complete":
			phase = analysis.Successful
		case "Failed":
			phase = analysis.Failed
		}
	}
	if phase != analysis.Running {
		return phase, "", nil
	}
	selector, _, _ := unstructured.NestedStringMap(job.Object, "spec", "selector", "matchLabels")
	if len(selector) == 0 {
		return analysis.Running, "", nil
	}
	pods, err := j.client.Resource(podGVR).Namespace(job.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: selector})})
	if err != nil {
		return "", "", fmt.Errorf("pods of job %s: %w", name, err)
	}
	if msg := terminalWait(pods.Items); msg != "" {
		return analysis.Inconclusive, msg, nil
	}
	return analysis.Running, "", nil
}

// terminalWait names the first container of pods that waits for a reason
// it never recovers from, or returns "".
func terminalWait(pods []unstructured.Unstructured) string {
	for _, pod := range pods {
		for _, field := range []string{"initContainerStatuses", "containerStatuses"} {
			statuses, _, _ := unstructured.NestedSlice(pod.Object, "status", field)
			for _, s := range statuses {
				cs, _ := s.(map[string]any)
				reason, _, _ := unstructured.NestedString(cs, "state", "waiting", "reason")
				if terminalWaitingReasons[reason] {
					message, _, _ := unstructured.NestedString(cs, "state", "waiting", "message")
					container, _ := cs["name"].(string)
					return fmt.Sprintf("Pod %s, container %s has terminal error (%s): %s", pod.GetName(), container, reason, message)
				}
			}
		}
	}
	return ""
}

// Stop deletes the measurement's Job and its pods (foreground, as Argo
// Rollouts deletes it).
func (j runJobs) Stop(ctx context.Context, metadata map[string]string) error {
	name, err := jobOf(metadata)
	if err != nil {
		return err
	}
	return j.delete(ctx, name)
}

func (j runJobs) delete(ctx context.Context, name string) error {
	foreground := metav1.DeletePropagationForeground
	err := j.ri().Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &foreground})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete job %s: %w", name, err)
	}
	return nil
}

// Prune deletes the metric's oldest Jobs beyond the newest keep, so a run
// keeps the Jobs of the measurements its status keeps. Argo Rollouts
// counts the run's Jobs of every metric together here; they are counted
// per metric, so one metric's measurements never remove another's Jobs.
func (j runJobs) Prune(ctx context.Context, metric string, keep int) error {
	list, err := j.ri().List(ctx, metav1.ListOptions{LabelSelector: jobRunUIDLabel + "=" + string(j.run.GetUID())})
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	var mine []unstructured.Unstructured
	for _, job := range list.Items {
		if job.GetAnnotations()[jobMetricAnnotation] == metric && job.GetDeletionTimestamp() == nil {
			mine = append(mine, job)
		}
	}
	slices.SortFunc(mine, func(a, b unstructured.Unstructured) int {
		return a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time)
	})
	for i := 0; i < len(mine)-keep; i++ {
		if err := j.delete(ctx, mine[i].GetName()); err != nil {
			return err
		}
	}
	return nil
}

// jobOf is the Job a measurement's metadata names.
func jobOf(metadata map[string]string) (string, error) {
	if metadata[jobNameKey] == "" {
		return "", fmt.Errorf("job metadata reference missing")
	}
	return metadata[jobNameKey], nil
}
