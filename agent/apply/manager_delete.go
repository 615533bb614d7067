package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// DeleteAll deletes objects with the given propagation; ones already gone
// count as deleted. Every failure is in the change set and in the joined
// error.
func (m *Manager) DeleteAll(ctx context.Context, refs []ObjectRef, policy metav1.DeletionPropagation) (*ChangeSet, error) {
	cs := &ChangeSet{}
	var errs []error
	for _, ref := range refs {
		ri, _, err := m.client(ref.Object())
		if err == nil {
			err = ri.Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &policy})
			if apierrors.IsNotFound(err) {
				err = nil
			}
		}
		if err != nil {
			oe := &ObjectError{Ref: ref, Action: "delete", Err: err}
			errs = append(errs, oe)
			cs.Append(Change{Ref: ref, Action: Failed, Message: oe.Error()})
			continue
		}
		cs.Append(Change{Ref: ref, Action: Pruned})
	}
	return cs, errors.Join(errs...)
}

// WaitDeleted waits until none of refs exists any more (their finalizers
// ran), for at most timeout in all. The error names each object still
// there (an *ObjectError each, joined).
func (m *Manager) WaitDeleted(ctx context.Context, refs []ObjectRef, timeout time.Duration) error {
	clients := make([]dynamic.ResourceInterface, len(refs))
	for i, ref := range refs {
		ri, _, err := m.client(ref.Object())
		if err != nil {
			return &ObjectError{Ref: ref, Action: "wait for deletion", Err: err}
		}
		clients[i] = ri
	}
	gone := make([]bool, len(refs))
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		all := true
		for i, ref := range refs {
			if !gone[i] {
				_, err := clients[i].Get(ctx, ref.Name, metav1.GetOptions{})
				gone[i] = apierrors.IsNotFound(err)
			}
			all = all && gone[i]
		}
		return all, nil
	})
	if err == nil {
		return nil
	}
	var errs []error
	for i, ref := range refs {
		if !gone[i] {
			errs = append(errs, &ObjectError{Ref: ref, Action: "wait for deletion", Err: fmt.Errorf("still exists after %s: %w", timeout, err)})
		}
	}
	return errors.Join(errs...)
}
