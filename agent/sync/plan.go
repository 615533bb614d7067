package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/agent/health"
	"github.com/flotilla-dev/flotilla/agent/inventory"
	"github.com/flotilla-dev/flotilla/agent/waves"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// runPlan syncs an application with waves or hooks as Argo CD does: every
// resource is dry-run first, so a plan that cannot apply applies nothing;
// then PreSync hooks, the Sync waves (negative first) and PostSync hooks
// run in order, each step applied and finished (healthy, hooks complete)
// before the next. Pruning follows the last Sync wave. When a step fails
// the SyncFail hooks run, and the error says which steps ran.
func (s *Syncer) runPlan(ctx context.Context, ds *flotillav1.DesiredState, st *flotillav1.AppStatus, plan *waves.Plan, inv *inventory.Inventory) ([]*unstructured.Unstructured, error) {
	if err := s.createNamespace(ctx, ds, plan.Resources); err != nil {
		return nil, err
	}
	if _, err := s.manager.Diff(ctx, plan.Resources, nil); err != nil {
		return nil, fmt.Errorf("nothing of history %d was applied where the dry-run failed: %w", ds.GetHistoryId(), err)
	}
	all := &apply.ChangeSet{}
	var done []string
	var applied []apply.ObjectRef
	fail := func(err error) error {
		// What was applied stays in the inventory, so a later sync can
		// prune it.
		inv.Objects = append(inv.Objects, inventory.Diff(applied, inv.Objects)...)
		if saveErr := s.inventory.Save(ctx, inv); saveErr != nil {
			err = errors.Join(err, saveErr)
		}
		ran := "nothing"
		if len(done) > 0 {
			ran = strings.Join(done, ", ")
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
	for _, step := range plan.Steps {
		if step.Phase == waves.PostSync && !recorded {
			if err := s.record(ctx, ds, st, inv, plan.Resources, all); err != nil {
				return nil, fail(err)
			}
			recorded = true
		}
		label := fmt.Sprintf("%s wave %d", step.Phase, step.Wave)
		if len(step.Resources) > 0 {
			cs, err := s.manager.ApplyAll(ctx, step.Resources, replaceOption(ds))
			all.Append(cs.Changes...)
			st.Resources = append(st.Resources, resources(cs, ds)...)
			for _, o := range step.Resources {
				applied = append(applied, apply.RefOf(o))
			}
			if err != nil {
				return nil, fail(fmt.Errorf("%s: %w", label, err))
			}
		}
		if err := s.runStep(ctx, label, step.Resources, step.Hooks); err != nil {
			return nil, fail(err)
		}
		done = append(done, label)
	}
	if !recorded {
		if err := s.record(ctx, ds, st, inv, plan.Resources, all); err != nil {
			return nil, fail(err)
		}
	}
	st.Message += "; ran " + strings.Join(done, ", ")
	s.fillHealth(ctx, st, plan.Resources)
	return plan.Resources, nil
}

// runStep starts the hooks and waits until they completed and resources
// are healthy. A hook that fails fails the step at once; a step that does
// not finish within the health timeout fails naming what it waits for.
// Hooks are then deleted as their policies say.
func (s *Syncer) runStep(ctx context.Context, label string, resources []*unstructured.Unstructured, hooks []waves.Hook) error {
	live := make([]*unstructured.Unstructured, 0, len(hooks))
	for _, h := range hooks {
		obj, err := s.startHook(ctx, h)
		if err != nil {
			return fmt.Errorf("%s: hook %s: %w", label, hookName(h.Object), err)
		}
		live = append(live, obj)
	}
	err := s.waitStep(ctx, label, resources, live)
	for i, h := range hooks {
		if (err == nil && h.Delete[waves.HookSucceeded]) || (err != nil && h.Delete[waves.HookFailed]) {
			if delErr := s.deleteHook(ctx, live[i]); delErr != nil {
				s.log.Warn("delete hook", "hook", hookName(live[i]), "error", delErr)
			}
		}
	}
	return err
}

// waitStep polls resources and hooks until all are healthy (a hook
// healthy is a hook complete).
func (s *Syncer) waitStep(ctx context.Context, label string, resources, hooks []*unstructured.Unstructured) error {
	if len(resources)+len(hooks) == 0 {
		return nil
	}
	objs := append(append([]*unstructured.Unstructured{}, resources...), hooks...)
	deadline := time.Now().Add(s.opts.HealthTimeout)
	for {
		res, err := s.health(ctx, objs)
		if err == nil {
			var waiting []string
			for i, o := range objs {
				h := res.Objects[i]
				isHook := i >= len(resources)
				switch {
				case h == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY:
				case isHook && h == flotillav1.HealthStatus_HEALTH_STATUS_DEGRADED:
					return fmt.Errorf("%s: hook %s failed: %s", label, hookName(o), res.Message[i])
				default:
					waiting = append(waiting, fmt.Sprintf("%s %s: %s", apply.RefOf(o), health.Name(h), res.Message[i]))
				}
			}
			if len(waiting) == 0 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not finish within %s: %s", label, s.opts.HealthTimeout, strings.Join(waiting, "; "))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.opts.HealthInterval):
		}
	}
}

// startHook creates a hook: a named one after deleting its previous run
// (BeforeHookCreation) or by applying it; one with generateName anew.
func (s *Syncer) startHook(ctx context.Context, h waves.Hook) (*unstructured.Unstructured, error) {
	obj := h.Object.DeepCopy()
	ri, err := s.manager.Client(obj)
	if err != nil {
		return nil, err
	}
	if obj.GetName() == "" {
		return ri.Create(ctx, obj, metav1.CreateOptions{FieldManager: apply.FieldManager})
	}
	if h.Delete[waves.BeforeHookCreation] {
		if err := s.deleteHook(ctx, obj); err != nil {
			return nil, err
		}
		if err := s.waitGone(ctx, ri, obj.GetName()); err != nil {
			return nil, err
		}
	}
	return ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: apply.FieldManager, Force: true})
}

// deleteHook deletes a hook object (background propagation); gone is fine.
func (s *Syncer) deleteHook(ctx context.Context, obj *unstructured.Unstructured) error {
	_, err := s.manager.DeleteAll(ctx, []apply.ObjectRef{apply.RefOf(obj)}, metav1.DeletePropagationBackground)
	return err
}

// waitGone waits until name no longer exists (finalizers done).
func (s *Syncer) waitGone(ctx context.Context, ri dynamic.ResourceInterface, name string) error {
	deadline := time.Now().Add(s.opts.HealthTimeout)
	for {
		_, err := ri.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still exists after %s", name, s.opts.HealthTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func hookName(obj *unstructured.Unstructured) string {
	name := obj.GetName()
	if name == "" {
		name = obj.GetGenerateName() + "…"
	}
	return obj.GetKind() + "/" + name
}
