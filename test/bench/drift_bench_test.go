package bench

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// BenchmarkDriftCorrection measures self-heal: from an out-of-band change
// (a patch of a ConfigMap's data, a scale of a Deployment, a delete of a
// ConfigMap, in turn) to the object restored from Git, by the agent binary
// against a real apiserver; 50 changes.
func BenchmarkDriftCorrection(b *testing.B) {
	h := startHub(b, time.Hour, nil)
	c := testenv.StartCluster(b, testenv.ClusterOptions{Name: "prod-eu"})
	agent := startAgentProcess(b, testenv.BuildCommand(b, "./cmd/agent"), "--credentials", h.Credentials(b, "prod-eu", map[string]string{"env": "production"}), "--kubeconfig", c.Kubeconfig, "--cache-dir", b.TempDir())
	defer agent.stop()
	waitAppStatus(b, h, "worker-service", func(st *flotillav1.AppStatus) bool {
		return st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED
	})
	ctx := context.Background()
	cms := c.Dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("production")
	deps := c.Dynamic.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).Namespace("production")
	queue := func() string {
		cm, err := cms.Get(ctx, "worker-service-config", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		q, _, _ := unstructured.NestedString(cm.Object, "data", "QUEUE")
		return q
	}
	replicas := func() int64 {
		d, err := deps.Get(ctx, "worker-service", metav1.GetOptions{})
		if err != nil {
			return -1
		}
		r, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
		return r
	}
	changes := []struct {
		name     string
		change   func() error
		restored func() bool
	}{
		{"patch", func() error {
			_, err := cms.Patch(ctx, "worker-service-config", types.MergePatchType, []byte(`{"data":{"QUEUE":"hand-edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
			return err
		}, func() bool { return queue() == "jobs-production" }},
		{"scale", func() error {
			_, err := deps.Patch(ctx, "worker-service", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{FieldManager: "kubectl-scale"}, "scale")
			return err
		}, func() bool { return replicas() == 4 }},
		{"delete", func() error { return cms.Delete(ctx, "worker-service-config", metav1.DeleteOptions{}) },
			func() bool { return queue() == "jobs-production" }},
	}
	for b.Loop() {
		var latencies []time.Duration
		for i := range 50 {
			ch := changes[i%len(changes)]
			start := time.Now()
			if err := ch.change(); err != nil {
				b.Fatalf("%s: %v", ch.name, err)
			}
			for !ch.restored() {
				if time.Since(start) > 30*time.Second {
					b.Fatalf("%s %d not restored within 30 s", ch.name, i)
				}
				time.Sleep(2 * time.Millisecond)
			}
			latencies = append(latencies, time.Since(start))
		}
		b.ReportMetric(float64(percentile(latencies, 0.5).Milliseconds()), "drift-restored-p50-ms")
		b.ReportMetric(float64(percentile(latencies, 0.99).Milliseconds()), "drift-restored-p99-ms")
	}
}
