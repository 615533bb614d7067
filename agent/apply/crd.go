package apply

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// CRDResource is the resource of CustomResourceDefinitions.
var CRDResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// pollInterval is how often a wait of the engine re-reads the API server:
// often enough that a sync does not idle noticeably, rarely enough that a
// wait costs the server nothing.
const pollInterval = 100 * time.Millisecond

// WaitEstablished waits until the API server serves the CRD name (its
// Established condition is True), for at most timeout.
func WaitEstablished(ctx context.Context, client dynamic.Interface, name string, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		crd, err := client.Resource(CRDResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil // not created yet, or the server's hiccup: look again
		}
		return established(crd), nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s is not established: %w", name, err)
	}
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
