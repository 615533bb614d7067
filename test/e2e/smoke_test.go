package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestSmoke starts every part of the test environment, proves each one is
// reachable and does its job, and then checks that tearing down leaves no
// process behind.
func TestSmoke(t *testing.T) {
	var children []int
	t.Run("environment", func(t *testing.T) {
		plain := testenv.StartCluster(t, testenv.ClusterOptions{Name: "plain"})
		workloads := testenv.StartCluster(t, testenv.ClusterOptions{Name: "workloads", Workloads: true})

		t.Run("apiservers are separate", func(t *testing.T) {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-in-plain"}}
			if _, err := plain.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := workloads.Client.CoreV1().Namespaces().Get(t.Context(), ns.Name, metav1.GetOptions{})
			if err == nil {
				t.Fatal("namespace created in cluster plain is visible in cluster workloads")
			}
		})

		t.Run("apiserver reports its release version", func(t *testing.T) {
			v, err := plain.Client.Discovery().ServerVersion()
			if err != nil || v.GitVersion != "v1.37.2" {
				t.Fatalf("server version = %v, %v; want v1.37.2 (Helm's .Capabilities come from it)", v, err)
			}
		})

		t.Run("kubeconfig works with kubectl", func(t *testing.T) {
			out, err := plain.Kubectl(t, "get", "namespace", "only-in-plain", "-o", "name")
			if err != nil || strings.TrimSpace(out) != "namespace/only-in-plain" {
				t.Fatalf("kubectl get namespace: %v: %s", err, out)
			}
		})

		t.Run("deployment becomes available", func(t *testing.T) {
			deployAndWaitAvailable(t, workloads, 3)
		})

		t.Run("nats jetstream", func(t *testing.T) {
			n := testenv.StartNATS(t)
			js, err := jetstream.New(n.Connect(t))
			if err != nil {
				t.Fatal(err)
			}
			kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "smoke"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(t.Context(), "prod-eu.api-service", []byte("v1")); err != nil {
				t.Fatal(err)
			}
			entry, err := kv.Get(t.Context(), "prod-eu.api-service")
			if err != nil || string(entry.Value()) != "v1" {
				t.Fatalf("kv get = %v, %v; want v1", entry, err)
			}
		})

		t.Run("git over smart http with basic auth", func(t *testing.T) {
			git := testenv.NewGitServer(t, testenv.GitServerOptions{Username: "hub", Password: "s3cret"})
			url := git.CreateRepo(t, "gitops-config")
			sha := git.PushDir(t, "gitops-config", "main", "initial import", testenv.Fixture(t, "gitops-config"))
			if head := git.Head(t, "gitops-config", "main"); head != sha {
				t.Fatalf("head = %s, want pushed %s", head, sha)
			}
			if !slices.Contains(git.Files(t, "gitops-config", "main"), "environments/production/api-service-values.yaml") {
				t.Fatal("fixture not pushed: production value file missing")
			}
			// Without credentials the server refuses, with them it serves refs.
			resp, err := http.Get(url + "/info/refs?service=git-upload-pack")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("anonymous fetch: status %d, want 401", resp.StatusCode)
			}
			bumped := git.WriteFiles(t, "gitops-config", "main", "deploy: api-service abc123", map[string]string{
				"environments/production/api-service-values.yaml": "image:\n  tag: abc123\n",
			})
			if bumped == sha {
				t.Fatal("second push did not move the branch")
			}
		})

		var err error
		if children, err = testenv.ChildPIDs(); err != nil {
			t.Fatal(err)
		}
		// Two apiservers, two etcds, controller-manager, scheduler and kwok.
		if len(children) < 7 {
			t.Fatalf("child processes = %v, want at least 7", children)
		}
	})

	for _, pid := range children {
		if testenv.ProcessAlive(pid) {
			t.Errorf("process %d still running after the environment was torn down", pid)
		}
	}
}

// deployAndWaitAvailable creates a Deployment and waits until the scheduler,
// controller-manager and kwok have made all its replicas Available.
func deployAndWaitAvailable(t *testing.T, c *testenv.Cluster, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": "smoke"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/smoke:1"}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments("default").Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 90*time.Second, func() error {
		got, err := c.Client.AppsV1().Deployments("default").Get(context.Background(), "smoke", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue && got.Status.AvailableReplicas == replicas {
				return nil
			}
		}
		return fmt.Errorf("deployment smoke: %d/%d available, conditions %v", got.Status.AvailableReplicas, replicas, got.Status.Conditions)
	})
}
