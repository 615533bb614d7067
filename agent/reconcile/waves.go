package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/health"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/agent/waves"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// applyWaves syncs an application with waves or hooks as Argo CD does:
// every resource is dry-run first, so a plan that cannot apply applies
// nothing; then PreSync hooks, the Sync waves (negative first) and PostSync
// hooks run in order, each step applied and finished (healthy, hooks
// complete) before the next. Pruning follows the last Sync wave. When a
// step fails the SyncFail hooks run, and the error says which steps ran.
func (s *Syncer) applyWaves(ctx context.Context, spec syncSpec, plan *waves.Plan, inv *inventory.Inventory) (syncResult, error) {
	res := syncResult{objects: plan.Resources}
	if _, err := s.deps.Cluster.Diff(ctx, plan.Resources, nil); err != nil {
		return res, fmt.Errorf("nothing of history %d was applied where the dry-run failed: %w", spec.historyID, err)
	}
	var applied []apply.ObjectRef
	fail := func(err error) error {
		// What was applied stays in the inventory, so a later sync can
		// prune it.
		inv.Objects = append(inv.Objects, inventory.Diff(applied, inv.Objects)...)
		if saveErr := s.deps.Inventories.Save(ctx, inv); saveErr != nil {
			err = errors.Join(err, saveErr)
		}
		ran := "nothing"
		if len(res.ran) > 0 {
			ran = strings.Join(res.ran, ", ")
		}
		msg := fmt.Sprintf("%v (done before: %s)", err, ran)
		if len(plan.SyncFail) > 0 {
			if hookErr := s.runStep(ctx, "SyncFail hooks", nil, plan.SyncFail); hookErr != nil {
				msg += "; SyncFail hooks failed: " + hookErr.Error()
			} else {
				msg += "; SyncFail hooks ran"
			}
		}
		return errors.New(msg)
	}
	recorded := false
	record := func() error {
		recorded = true
		pruned, err := s.pruneAndRecord(ctx, spec, inv, plan.Resources)
		res.pruned, res.leftTo = pruned.changes, pruned.leftTo
		return err
	}
	for _, step := range plan.Steps {
		if step.Phase == waves.PostSync && !recorded {
			if err := record(); err != nil {
				return res, fail(err)
			}
		}
		label := fmt.Sprintf("%s wave %d", step.Phase, step.Wave)
		if len(step.Resources) > 0 {
			cs, err := s.deps.Cluster.ApplyAll(ctx, step.Resources, spec.applyOptions()...)
			res.applied = append(res.applied, cs.Changes...)
			applied = append(applied, apply.Refs(step.Resources)...)
			if err != nil {
				return res, fail(fmt.Errorf("%s: %w", label, err))
			}
		}
		if err := s.runStep(ctx, label, step.Resources, step.Hooks); err != nil {
			return res, fail(err)
		}
		res.ran = append(res.ran, label)
	}
	if !recorded {
		if err := record(); err != nil {
			return res, fail(err)
		}
	}
	return res, nil
}

// runStep starts the hooks and waits until they completed and resources
// are healthy. A hook that fails fails the step at once; a step that does
// not finish within the health timeout fails naming what it waits for.
// Hooks are then deleted as their policies say.
func (s *Syncer) runStep(ctx context.Context, label string, resources []*unstructured.Unstructured, hooks []waves.Hook) error {
	live := make([]*unstructured.Unstructured, 0, len(hooks))
	for _, h := range hooks {
		obj, err := s.deps.Cluster.StartHook(ctx, h.Object, h.Delete[waves.BeforeHookCreation], s.opts.HealthTimeout)
		if err != nil {
			return fmt.Errorf("%s: hook %s: %w", label, hookName(h.Object), err)
		}
		live = append(live, obj)
	}
	err := s.waitStep(ctx, label, resources, live)
	var done []apply.ObjectRef
	for i, h := range hooks {
		if (err == nil && h.Delete[waves.HookSucceeded]) || (err != nil && h.Delete[waves.HookFailed]) {
			done = append(done, apply.RefOf(live[i]))
		}
	}
	if len(done) > 0 {
		if _, delErr := s.deps.Cluster.DeleteAll(ctx, done, metav1.DeletePropagationBackground); delErr != nil {
			s.log.Warn("delete hooks", "step", label, "error", delErr)
		}
	}
	return err
}

// waitStep polls resources and hooks until all are healthy (a hook
// healthy is a hook complete), for at most the health timeout.
func (s *Syncer) waitStep(ctx context.Context, label string, resources, hooks []*unstructured.Unstructured) error {
	if len(resources)+len(hooks) == 0 {
		return nil
	}
	objs := append(append([]*unstructured.Unstructured{}, resources...), hooks...)
	var waiting []string
	var failed error
	err := wait.PollUntilContextTimeout(ctx, s.opts.HealthInterval, s.opts.HealthTimeout, true, func(ctx context.Context) (bool, error) {
		obs, err := s.observe(ctx, objs)
		if err != nil {
			return false, nil // the API server's hiccup: look again
		}
		waiting = waiting[:0]
		for i, o := range objs {
			h := obs.Objects[i]
			isHook := i >= len(resources)
			switch {
			case h == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY:
			case isHook && h == flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED:
				failed = fmt.Errorf("%s: hook %s failed: %s", label, hookName(o), obs.Message[i])
				return false, failed
			default:
				waiting = append(waiting, fmt.Sprintf("%s %s: %s", apply.RefOf(o), health.Name(h), obs.Message[i]))
			}
		}
		return len(waiting) == 0, nil
	})
	switch {
	case failed != nil:
		return failed
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("%s did not finish within %s: %s", label, s.opts.HealthTimeout, strings.Join(waiting, "; "))
	}
	return nil
}

func hookName(obj *unstructured.Unstructured) string {
	name := obj.GetName()
	if name == "" {
		name = obj.GetGenerateName() + "…"
	}
	return obj.GetKind() + "/" + name
}
