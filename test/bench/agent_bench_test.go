package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/agent/rollouts"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

const bulkApp = `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: bulk
spec:
  source:
    repoURL: https://github.com/your-org/gitops-config
    path: bulk
  destination:
    server: https://kubernetes.default.svc
    namespace: bulk
  syncPolicy:
    automated: {prune: true}
    syncOptions: [CreateNamespace=true]
`

// agentProcess is the agent binary running against a cluster, so its
// memory is its own.
type agentProcess struct {
	cmd *exec.Cmd
	// cgroup is the memory cgroup it runs in alone (startAgentContainer),
	// else nil.
	cgroup *memoryCgroup
}

func startAgentProcess(b *testing.B, bin string, args ...string) *agentProcess {
	return startLoggedProcess(b, io.Discard, bin, args...)
}

// startLoggedProcess is startAgentProcess writing the process's output to
// out.
func startLoggedProcess(b *testing.B, out io.Writer, bin string, args ...string) *agentProcess {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &agentProcess{cmd: cmd}
	b.Cleanup(p.stop)
	return p
}

func (p *agentProcess) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
	if p.cgroup != nil {
		p.cgroup.remove()
	}
}

// procStatusMiB reads a field of /proc/PID/status in MiB: VmRSS is the
// whole resident set, RssAnon the private memory (heap, stacks), RssFile
// the binary's (and libc's) file-backed pages.
func procStatusMiB(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkAgent runs the agent binary on a cluster with the fixture plus
// a 1,000-object application and measures its first sync, its memory at
// steady state (resident set, and as a container: working set, private
// and file-backed, see startAgentContainer), a no-op re-sync after a
// restart, and commit to applied over 20 image-tag commits.
func BenchmarkAgent(b *testing.B) {
	h := startHub(b, time.Hour, nil)
	var objects strings.Builder
	for _, o := range ThousandObjects("bulk") {
		data, _ := yaml.Marshal(o.Object)
		objects.WriteString("---\n")
		objects.Write(data)
	}
	h.Commit(b, "add the bulk app", map[string]string{"apps/bulk.yaml": bulkApp, "bulk/objects.yaml": objects.String()})
	h.webhook(b)

	// Workloads: the bulk app's 334 Deployments really become Available, so
	// health settles and the agent reaches a steady state, as in a cluster.
	c := testenv.StartCluster(b, testenv.ClusterOptions{Name: "prod-eu", Workloads: true, Nodes: 4})
	// Built as the agent image's binary is, and run as its container:
	// the working set the kubelet reads is the figure the target is for.
	bin := buildImageBinary(b, "./cmd/agent")
	args := []string{"--credentials", h.Credentials(b, "prod-eu", map[string]string{"env": "production"}), "--kubeconfig", c.Kubeconfig, "--cache-dir", b.TempDir(), "--metrics-addr", "127.0.0.1:0"}

	for b.Loop() {
		agent := startAgentContainer(b, bin, args...)
		first := waitAppStatus(b, h, "bulk", func(st *flotillav1.AppStatus) bool {
			return st.GetPhase() == flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED
		})
		b.ReportMetric(syncSeconds(first), "first-sync-s")
		waitAppStatus(b, h, "bulk", func(st *flotillav1.AppStatus) bool {
			return st.GetHealth() == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY
		})
		time.Sleep(10 * time.Second) // steady state: health settled, garbage returned
		reportAgentMemory(b, agent)

		before := bulkVersions(b, c)
		agent.stop()
		restarted := time.Now()
		agent = startAgentProcess(b, bin, args...)
		noop := waitAppStatus(b, h, "bulk", func(st *flotillav1.AppStatus) bool {
			return st.GetMessage() == "already applied" && !st.GetObservedAt().AsTime().Before(restarted)
		})
		b.ReportMetric(syncSeconds(noop)*1000, "noop-ms")
		after := bulkVersions(b, c)
		writes := 0
		for k, v := range after {
			if before[k] != v {
				writes++
			}
		}
		b.ReportMetric(float64(writes), "noop-writes")

		var latencies []time.Duration
		for i := range 20 {
			tag := fmt.Sprintf("c2a-%d", i)
			bumpTag(b, h, tag)
			start := time.Now()
			h.webhook(b)
			waitRolloutImage(b, c, "api-service:"+tag)
			latencies = append(latencies, time.Since(start))
		}
		b.ReportMetric(float64(percentile(latencies, 0.5).Milliseconds()), "commit-applied-p50-ms")
		b.ReportMetric(float64(percentile(latencies, 0.99).Milliseconds()), "commit-applied-p99-ms")
		agent.stop()
	}
}

func syncSeconds(st *flotillav1.AppStatus) float64 {
	return st.GetFinishedAt().AsTime().Sub(st.GetStartedAt().AsTime()).Seconds()
}

// waitAppStatus waits until the status of prod-eu's app satisfies ok.
func waitAppStatus(b *testing.B, h *benchHub, app string, ok func(*flotillav1.AppStatus) bool) *flotillav1.AppStatus {
	return h.WaitStatus(b, "prod-eu", app, 5*time.Minute, func(st *flotillav1.AppStatus) error {
		if !ok(st) {
			return fmt.Errorf("%v %s", st.GetPhase(), st.GetMessage())
		}
		return nil
	})
}

var bulkGVRs = []schema.GroupVersionResource{{Version: "v1", Resource: "configmaps"}, {Version: "v1", Resource: "services"}, {Group: "apps", Version: "v1", Resource: "deployments"}}

func bulkVersions(b *testing.B, c *testenv.Cluster) map[string]string {
	out := map[string]string{}
	for _, gvr := range bulkGVRs {
		list, err := c.Dynamic.Resource(gvr).Namespace("bulk").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range list.Items {
			out[gvr.Resource+"/"+o.GetName()] = o.GetResourceVersion()
		}
	}
	if len(out) < 1000 {
		b.Fatalf("bulk app has %d objects, want 1000", len(out))
	}
	return out
}

// waitRolloutImage waits until production's api-service Rollout runs an
// image ending in suffix.
func waitRolloutImage(b *testing.B, c *testenv.Cluster, suffix string) {
	c.WaitImage(b, rollouts.GVR, "production", "api-service", suffix, time.Minute)
}
