package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/agent/apply"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// BenchmarkApply1000 measures the first apply of a 1,000-object application
// with Flotilla's resource manager and with `kubectl apply --server-side`,
// each into a fresh namespace of the same real API server, and Flotilla's
// re-apply of the unchanged objects. (Flux's ssa.ResourceManager runs in
// the separate module test/bench/flux.)
func BenchmarkApply1000(b *testing.B) {
	c := testenv.StartCluster(b, testenv.ClusterOptions{Name: "bench"})
	cfg := *c.Config
	cfg.QPS = -1 // as the agent sets it
	m, err := apply.NewManager(&cfg, apply.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	run := 0
	b.Run("engine=flotilla/first", func(b *testing.B) {
		for b.Loop() {
			run++
			ns := fmt.Sprintf("flotilla-%d", run)
			objs := append([]*unstructured.Unstructured{NamespaceObject(ns)}, ThousandObjects(ns)...)
			cs, err := m.ApplyAll(ctx, objs)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cs.Writes()), "writes")
		}
	})
	b.Run("engine=flotilla/unchanged", func(b *testing.B) {
		ns := fmt.Sprintf("flotilla-%d", run)
		objs := append([]*unstructured.Unstructured{NamespaceObject(ns)}, ThousandObjects(ns)...)
		for b.Loop() {
			cs, err := m.ApplyAll(ctx, objs)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cs.Writes()), "writes")
		}
	})
	b.Run("engine=kubectl/first", func(b *testing.B) {
		kubectl := filepath.Join(testenv.BinDir(b, "kubectl"), "kubectl")
		for b.Loop() {
			run++
			ns := fmt.Sprintf("kubectl-%d", run)
			b.StopTimer()
			file := writeManifests(b, append([]*unstructured.Unstructured{NamespaceObject(ns)}, ThousandObjects(ns)...))
			b.StartTimer()
			out, err := exec.Command(kubectl, "--kubeconfig", c.Kubeconfig, "apply", "--server-side", "--field-manager", "kubectl-bench", "-f", file).CombinedOutput()
			if err != nil {
				b.Fatalf("kubectl: %v: %s", err, out)
			}
		}
	})
}

func writeManifests(b *testing.B, objs []*unstructured.Unstructured) string {
	var sb strings.Builder
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			b.Fatal(err)
		}
		sb.WriteString("---\n")
		sb.Write(data)
	}
	file := filepath.Join(b.TempDir(), "objects.yaml")
	if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return file
}
