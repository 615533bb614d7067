package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// flotilla runs the CLI in process, as an operator, and fails on any
// non-zero exit.
func flotilla(b *testing.B, h *benchHub, out io.Writer, args ...string) {
	var stderr strings.Builder
	if code := flotillatest.RunCLI(b, out, &stderr, append(args, "--hub", h.APIURL, "--token", flotillatest.OperatorToken)...); code != 0 {
		b.Fatalf("flotilla %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
	}
}

// BenchmarkRollbackToApplied measures `flotilla app rollback --revision N`
// from the command to the rolled-back image in the cluster, with the agent
// binary running against a real apiserver; 20 rollbacks, alternating
// between two history entries.
func BenchmarkRollbackToApplied(b *testing.B) {
	h := startHub(b, time.Hour, nil)
	c := testenv.StartCluster(b, testenv.ClusterOptions{Name: "prod-eu"})
	agent := startAgentProcess(b, testenv.BuildCommand(b, "./cmd/agent"), "--credentials", h.Credentials(b, "prod-eu", map[string]string{"env": "production"}), "--kubeconfig", c.Kubeconfig, "--cache-dir", b.TempDir())
	defer agent.stop()
	waitRolloutImage(b, c, "api-service:1.4.2") // history 1
	bumpTag(b, h, "2.0.0")
	h.webhook(b)
	waitRolloutImage(b, c, "api-service:2.0.0") // history 2

	for b.Loop() {
		var latencies []time.Duration
		for i := range 20 {
			id, want := 1, "api-service:1.4.2"
			if i%2 == 1 {
				id, want = 2, "api-service:2.0.0"
			}
			start := time.Now()
			flotilla(b, h, io.Discard, "app", "rollback", "api-service", "--revision", fmt.Sprint(id))
			waitRolloutImage(b, c, want)
			latencies = append(latencies, time.Since(start))
		}
		b.ReportMetric(float64(percentile(latencies, 0.5).Milliseconds()), "rollback-applied-p50-ms")
		b.ReportMetric(float64(percentile(latencies, 0.99).Milliseconds()), "rollback-applied-p99-ms")
	}
}

// BenchmarkAppList measures `flotilla app list` (table output) over 1,000
// clusters × 10 applications, each with an agent status.
func BenchmarkAppList(b *testing.B) {
	h := startHub(b, time.Hour, nil)
	files := map[string]string{"extra/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {k: v}\n"}
	for i := range 6 { // the fixture has 4 production apps
		files[fmt.Sprintf("apps/extra-%d.yaml", i)] = strings.ReplaceAll(strings.ReplaceAll(bulkApp, "name: bulk", fmt.Sprintf("name: extra-%d", i)), "path: bulk", "path: extra")
	}
	h.Commit(b, "six more apps", files)
	h.webhook(b)
	const clusters = 1000
	h.registerClusters(b, clusters)
	var published []*flotillav1.DesiredState
	testenv.Eventually(b, 5*time.Minute, func() error {
		published = h.Server.Published()
		if len(published) != clusters*10 {
			return fmt.Errorf("%d desired states published, want %d", len(published), clusters*10)
		}
		return nil
	})
	for _, ds := range published {
		st := &flotillav1.AppStatus{SchemaVersion: 1, Cluster: ds.GetCluster(), App: ds.GetApp(), HistoryId: ds.GetHistoryId(), Revision: ds.GetSource().GetCommit(),
			Phase: flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED, SyncStatus: flotillav1.SyncStatus_SYNC_STATUS_SYNCED, Health: flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY, Message: "1 created"}
		if err := h.Bus.PutStatus(context.Background(), st); err != nil {
			b.Fatal(err)
		}
	}
	var out countingWriter
	for b.Loop() {
		out = 0
		flotilla(b, h, &out, "app", "list")
	}
	if lines := int(out); lines != clusters*10+1 {
		b.Fatalf("app list printed %d lines, want %d", lines, clusters*10+1)
	}
}

// countingWriter counts lines.
type countingWriter int

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(strings.Count(string(p), "\n"))
	return len(p), nil
}
