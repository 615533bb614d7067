package e2e

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-dev/flotilla/internal/render"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestDeploymentManifestsAreValid renders deployments/ with the Kustomize
// the agent uses and has a real API server validate every object with a
// server-side dry-run.
func TestDeploymentManifestsAreValid(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Name: "install"})
	// A dry-run creates nothing, so namespaced objects need their namespace
	// to exist already.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-system"}}
	if _, err := c.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"agent", "hub"} {
		t.Run(dir, func(t *testing.T) {
			res, err := render.Render(context.Background(), render.Request{Root: filepath.Join(testenv.RepoRoot(t), "deployments"), Path: dir})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Manifests) < 3 {
				t.Fatalf("%s renders %d objects", dir, len(res.Manifests))
			}
			out, err := c.Kubectl(t, "apply", "--server-side", "--dry-run=server", "-k", filepath.Join(testenv.RepoRoot(t), "deployments", dir))
			if err != nil {
				t.Fatalf("server-side dry-run of deployments/%s: %v\n%s", dir, err, out)
			}
		})
	}
}
