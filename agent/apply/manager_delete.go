package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// ErrChanged is the error of an object DeleteAll did not delete because it
// changed after it was read (IfUnchanged).
var ErrChanged = errors.New("changed since it was read; not deleted")

// DeleteOption changes how DeleteAll deletes.
type DeleteOption func(*deleteOptions)

type deleteOptions struct {
	// read are the objects as the caller last read them, by ObjectRef.Key.
	read map[string]*unstructured.Unstructured
}

// IfUnchanged deletes each object only while it is the one read into live
// (by ObjectRef.Key): the same UID and resource version, so what the
// caller decided from that read still holds when the object goes. One
// that changed in between (another application took it over, a
// controller wrote it) is not deleted: its change is Failed and its error
// wraps ErrChanged. An object absent from live was gone when read and is
// deleted as without the option.
func IfUnchanged(live map[string]*unstructured.Unstructured) DeleteOption {
	return func(o *deleteOptions) { o.read = live }
}

// DeleteAll deletes objects with the given propagation; ones already gone
// count as deleted. Every failure is in the change set and in the joined
// error (an *ObjectError each; with IfUnchanged, wrapping ErrChanged for
// an object that changed since it was read).
func (m *Manager) DeleteAll(ctx context.Context, refs []ObjectRef, policy metav1.DeletionPropagation, opts ...DeleteOption) (*ChangeSet, error) {
	var o deleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	cs := &ChangeSet{}
	var errs []error
	for _, ref := range refs {
		ri, _, err := m.client(ref.Object())
		if err == nil {
			del := metav1.DeleteOptions{PropagationPolicy: &policy}
			if read := o.read[ref.Key()]; read != nil {
				uid, version := read.GetUID(), read.GetResourceVersion()
				del.Preconditions = &metav1.Preconditions{UID: &uid, ResourceVersion: &version}
			}
			err = ri.Delete(ctx, ref.Name, del)
			switch {
			case apierrors.IsNotFound(err):
				err = nil
			case apierrors.IsConflict(err) && del.Preconditions != nil:
				err = fmt.Errorf("%w: %w", ErrChanged, err)
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
