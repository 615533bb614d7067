package inventory

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-dev/flotilla/agent/apply"
)

func TestDiffIgnoresAPIVersion(t *testing.T) {
	old := []apply.ObjectRef{
		{Group: "autoscaling", Version: "v1", Kind: "HorizontalPodAutoscaler", Namespace: "production", Name: "api"},
		{Version: "v1", Kind: "Service", Namespace: "production", Name: "api"},
		{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress", Namespace: "production", Name: "api"},
	}
	current := []apply.ObjectRef{
		// The same HPA under a newer API version is not gone.
		{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler", Namespace: "production", Name: "api"},
		{Version: "v1", Kind: "Service", Namespace: "production", Name: "api"},
	}
	want := []apply.ObjectRef{{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress", Namespace: "production", Name: "api"}}
	if diff := cmp.Diff(want, Diff(old, current)); diff != "" {
		t.Errorf("gone (-want +got):\n%s", diff)
	}
}
