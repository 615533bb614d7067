package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// resourceHealth accepts a status whose kind/name resource has health h.
func resourceHealth(kind, name string, h flotillav1.HealthStatus) func(*flotillav1.AppStatus) error {
	return func(st *flotillav1.AppStatus) error {
		r := resourceStatus(st, kind, name)
		if r.GetHealth() != h {
			return fmt.Errorf("%s/%s is %v (%s), want %v; app %v", kind, name, r.GetHealth(), r.GetMessage(), h, st.GetHealth())
		}
		return nil
	}
}

// TestHealthIsFollowedForAsLongAsTheAppExists: the agent reports every
// change of any object's health, not only the application's and not only
// after a sync. An Ingress gets an address from the test cluster's load
// balancer, as from a cloud's; a Deployment that comes up while a Pending
// claim keeps the application Progressing shows Healthy; and a workload
// whose pods are evicted long after its sync turns the application
// Progressing, then Healthy again, each with an event.
func TestHealthIsFollowedForAsLongAsTheAppExists(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu", Workloads: true})
	startAgent(t, e, prod, map[string]string{"env": "production"}, t.TempDir())
	ctx := context.Background()
	commit := func(message string, files map[string]string) {
		t.Helper()
		e.Commit(t, message, files)
		e.Webhook(t, webhookSecret)
	}
	web := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules: [{host: web.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
`
	// No provisioner binds the claim: it stays Pending, so Progressing.
	claim := "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n"

	step := newSteps(t)
	step.run("objects that turn healthy after the sync are reported while the app stays Progressing", func(t *testing.T) {
		commit("add web", map[string]string{"apps/web.yaml": appIn("web", "web", "web"), "web/web.yaml": web, "web/claim.yaml": claim})
		st := e.WaitStatus(t, "prod-eu", "web", time.Minute, hasPhase(flotillav1.SyncPhase_SYNC_PHASE_SUCCEEDED))
		if d := resourceStatus(st, "Deployment", "web"); d.GetHealth() == flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY {
			t.Logf("the Deployment was Healthy at the sync already; the Ingress still proves the point")
		}
		for _, kind := range []string{"Deployment", "Ingress"} {
			st = e.WaitStatus(t, "prod-eu", "web", time.Minute, resourceHealth(kind, "web", flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY))
		}
		if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING || resourceStatus(st, "PersistentVolumeClaim", "data").GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING {
			t.Errorf("with the claim Pending the app is %v", st.GetHealth())
		}
	})

	step.run("a workload whose pods go long after its sync is reported, and its recovery", func(t *testing.T) {
		commit("web without its claim", map[string]string{"web/claim.yaml": ""})
		synced := e.WaitStatus(t, "prod-eu", "web", time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY {
				return fmt.Errorf("health %v", st.GetHealth())
			}
			return nil
		})
		// Evict every pod: the node refuses them from now on.
		taint := func(taints string) {
			t.Helper()
			_, err := prod.Client.CoreV1().Nodes().Patch(ctx, "kwok-node-0", types.MergePatchType, []byte(`{"spec":{"taints":`+taints+`}}`), metav1.PatchOptions{})
			must(t, err)
		}
		taint(`[{"key":"maintenance","value":"now","effect":"` + string(corev1.TaintEffectNoExecute) + `"}]`)
		e.WaitStatus(t, "prod-eu", "web", 2*time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHistoryId() != synced.GetHistoryId() {
				return fmt.Errorf("history %d: a new sync, not the same one followed", st.GetHistoryId())
			}
			if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_PROGRESSING || resourceStatus(st, "Deployment", "web").GetMessage() == "" {
				return fmt.Errorf("health %v, Deployment %v", st.GetHealth(), resourceStatus(st, "Deployment", "web"))
			}
			return nil
		})
		taint(`null`)
		e.WaitStatus(t, "prod-eu", "web", 2*time.Minute, func(st *flotillav1.AppStatus) error {
			if st.GetHealth() != flotillav1.HealthStatus_HEALTH_STATUS_HEALTHY {
				return fmt.Errorf("health %v, Deployment %v", st.GetHealth(), resourceStatus(st, "Deployment", "web"))
			}
			return nil
		})
		// Each change of the app's health is an event of the same sync.
		testenv.Eventually(t, 30*time.Second, func() error {
			events, err := e.Bus.Events(ctx, "prod-eu", "web", 100)
			if err != nil {
				return err
			}
			var changes []string
			for _, ev := range events {
				if ev.GetReason() == flotillav1.ReasonHealthChanged && ev.GetHistoryId() == synced.GetHistoryId() {
					changes = append(changes, ev.GetMessage())
				}
			}
			if n := len(changes); n < 2 || changes[n-2] != "health is Progressing" || changes[n-1] != "health is Healthy" {
				return fmt.Errorf("HealthChanged events of the last sync: %v", changes)
			}
			return nil
		})
	})
}
