package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// selfHealApp is the bulk application with self-heal on.
var selfHealApp = strings.Replace(bulkApp, "automated: {prune: true}", "automated: {prune: true, selfHeal: true}", 1)

// BenchmarkSelfHealAtScale measures the agent binary's memory managing
// 5,000 objects with self-heal on, as a container (startAgentContainer),
// in a cluster that also holds 20,000 objects it does not manage, and one
// drift correction there.
func BenchmarkSelfHealAtScale(b *testing.B) {
	h := startHub(b, time.Hour, nil)
	c := testenv.StartCluster(b, testenv.ClusterOptions{Name: "prod-eu"})
	ctx := context.Background()
	cmGVR := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	if _, err := c.Dynamic.Resource(nsGVR).Create(ctx, NamespaceObject("unmanaged"), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var g errgroup.Group
	g.SetLimit(16)
	for i := range 20000 {
		g.Go(func() error {
			cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": fmt.Sprintf("other-%05d", i), "namespace": "unmanaged"}, "data": map[string]any{"key": strings.Repeat("u", 64)}}}
			_, err := c.Dynamic.Resource(cmGVR).Namespace("unmanaged").Create(ctx, cm, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	var manifests strings.Builder
	for i := range 5000 {
		data, _ := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": fmt.Sprintf("managed-%04d", i)},
			"data": map[string]any{"key": strings.Repeat("v", 64)}})
		manifests.WriteString("---\n")
		manifests.Write(data)
	}
	h.Commit(b, "add 5,000 managed objects", map[string]string{"apps/bulk.yaml": selfHealApp, "bulk/objects.yaml": manifests.String()})
	h.webhook(b)

	bin := buildImageBinary(b, "./cmd/agent")
	for b.Loop() {
		agent := startAgentContainer(b, bin, "--credentials", h.Credentials(b, "prod-eu", map[string]string{"env": "production"}), "--kubeconfig", c.Kubeconfig, "--cache-dir", b.TempDir(), "--metrics-addr", "127.0.0.1:0")
		first := waitAppStatus(b, h, "bulk", func(st *flotillav1.AppStatus) bool {
			return st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED && st.GetHealth() == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY
		})
		b.ReportMetric(syncSeconds(first), "first-sync-s")
		time.Sleep(10 * time.Second) // steady state: watches open, garbage returned
		reportAgentMemory(b, agent)

		cms := c.Dynamic.Resource(cmGVR).Namespace("bulk")
		start := time.Now()
		if _, err := cms.Patch(ctx, "managed-2500", types.MergePatchType, []byte(`{"data":{"key":"edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			b.Fatal(err)
		}
		for {
			cm, err := cms.Get(ctx, "managed-2500", metav1.GetOptions{})
			if err == nil {
				if v, _, _ := unstructured.NestedString(cm.Object, "data", "key"); v != "edited" {
					break
				}
			}
			if time.Since(start) > time.Minute {
				b.Fatal("drift not corrected within a minute")
			}
			time.Sleep(2 * time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "drift-restored-ms")
		agent.stop()
	}
}
