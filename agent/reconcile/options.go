package reconcile

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// syncSpec is a desired state with what a sync reads of it parsed once:
// its identity, destination and Argo CD sync policy.
type syncSpec struct {
	ds        *flotillav1.DesiredState
	cluster   string
	app       string
	historyID uint64
	revision  string
	namespace string
	// applied identifies the desired state for the inventory's no-op check.
	applied  string
	deletion *flotillav1.Deletion
	prune    bool
	selfHeal bool
	retry    *flotillav1.Retry
	ignore   []*flotillav1.IgnoreDifferences
	options  syncOptions
}

// syncOptions are the application's syncPolicy.syncOptions the agent acts
// on, as Argo CD reads them (keys and values case-insensitive).
type syncOptions struct {
	createNamespace          bool
	replace                  bool
	failOnSharedResource     bool
	respectIgnoreDifferences bool
	skipDryRunOnMissing      bool
	// prunePropagation is PrunePropagationPolicy. Without one it is
	// background, where Argo CD's default is foreground: the end state is
	// the same, but the pruned owner goes first and the garbage collector
	// removes its dependents after it (docs/agent.md).
	prunePropagation metav1.DeletionPropagation
}

func newSyncSpec(ds *flotillav1.DesiredState) syncSpec {
	policy := ds.GetSyncPolicy()
	return syncSpec{
		ds: ds, cluster: ds.GetCluster(), app: ds.GetApp(), historyID: ds.GetHistoryId(), revision: ds.GetSource().GetCommit(),
		namespace: ds.GetDestination().GetNamespace(), applied: appliedID(ds), deletion: ds.GetDeletion(),
		prune: policy.GetAutomated().GetPrune(), selfHeal: policy.GetAutomated().GetSelfHeal(), retry: policy.GetRetry(),
		ignore: ds.GetIgnoreDifferences(), options: parseSyncOptions(policy.GetSyncOptions()),
	}
}

func parseSyncOptions(list []string) syncOptions {
	opts := syncOptions{prunePropagation: metav1.DeletePropagationBackground}
	for _, o := range list {
		key, value, _ := strings.Cut(strings.TrimSpace(o), "=")
		on := strings.EqualFold(value, "true")
		switch strings.ToLower(key) {
		case "createnamespace":
			opts.createNamespace = on
		case "replace":
			opts.replace = on
		case "failonsharedresource":
			opts.failOnSharedResource = on
		case "respectignoredifferences":
			opts.respectIgnoreDifferences = on
		case "skipdryrunonmissingresource":
			opts.skipDryRunOnMissing = on
		case "prunepropagationpolicy":
			switch strings.ToLower(value) {
			case "foreground":
				opts.prunePropagation = metav1.DeletePropagationForeground
			case "orphan":
				opts.prunePropagation = metav1.DeletePropagationOrphan
			}
		}
	}
	return opts
}

// objectOptions are an object's own argocd.argoproj.io/sync-options.
type objectOptions struct {
	replace    bool // Replace=true
	noPrune    bool // Prune=false
	noDelete   bool // Delete=false
	skipDryRun bool // SkipDryRunOnMissingResource=true
}

func objectOptionsOf(obj *unstructured.Unstructured) objectOptions {
	var opts objectOptions
	for _, o := range strings.Split(obj.GetAnnotations()["argocd.argoproj.io/sync-options"], ",") {
		key, value, _ := strings.Cut(strings.TrimSpace(o), "=")
		switch {
		case strings.EqualFold(key, "Replace"):
			opts.replace = strings.EqualFold(value, "true")
		case strings.EqualFold(key, "Prune"):
			opts.noPrune = strings.EqualFold(value, "false")
		case strings.EqualFold(key, "Delete"):
			opts.noDelete = strings.EqualFold(value, "false")
		case strings.EqualFold(key, "SkipDryRunOnMissingResource"):
			opts.skipDryRun = strings.EqualFold(value, "true")
		}
	}
	return opts
}
