package flux

import (
	"context"
	"fmt"
	"testing"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/test/bench"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// BenchmarkApply1000 is the peer of test/bench's BenchmarkApply1000:
// ResourceManager.ApplyAllStaged on the same 1,000 objects, first apply and
// unchanged re-apply, on a real API server.
func BenchmarkApply1000(b *testing.B) {
	c := testenv.StartCluster(b, testenv.ClusterOptions{Name: "flux"})
	cfg := *c.Config
	cfg.QPS = -1 // the same client-side setting as Flotilla's benchmark
	kube, err := client.New(&cfg, client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	// The poller waits for the Namespace stage, as kustomize-controller's does.
	poller := polling.NewStatusPoller(kube, kube.RESTMapper(), polling.Options{})
	m := ssa.NewResourceManager(kube, poller, ssa.Owner{Field: "flux-bench", Group: "bench.flotilla.dev"})
	ctx := context.Background()
	run := 0
	objects := func() []*unstructured.Unstructured {
		ns := fmt.Sprintf("flux-%d", run)
		return append([]*unstructured.Unstructured{bench.NamespaceObject(ns)}, bench.ThousandObjects(ns)...)
	}
	b.Run("engine=flux/first", func(b *testing.B) {
		for b.Loop() {
			run++
			if _, err := m.ApplyAllStaged(ctx, objects(), ssa.DefaultApplyOptions()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("engine=flux/unchanged", func(b *testing.B) {
		objs := objects()
		for b.Loop() {
			if _, err := m.ApplyAllStaged(ctx, objs, ssa.DefaultApplyOptions()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
