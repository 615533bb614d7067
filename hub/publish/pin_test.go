package publish

import (
	"context"
	"crypto/sha1"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-dev/flotilla/hub/discovery"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	"github.com/flotilla-dev/flotilla/internal/appspec"
)

const repo = "https://github.com/your-org/gitops-config"

// revisionTrees serves one directory as the repository at every revision.
type revisionTrees struct{ dir string }

func (r revisionTrees) Tree(context.Context, string, string) (*discovery.Tree, error) {
	return &discovery.Tree{RepoURL: repo, Dir: r.dir, Commit: &object.Commit{Hash: plumbing.Hash(sha1.Sum([]byte(r.dir)))}}, nil
}

// discover renders a repository holding one application, web, whose
// ConfigMap carries value, for prod-eu.
func discover(t *testing.T, value string) *discovery.Result {
	t.Helper()
	return discoverFor(t, value, "prod-eu")
}

// discoverFor is discover for clusters.
func discoverFor(t *testing.T, value string, clusters ...string) *discovery.Result {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"apps/web.yaml": "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: web}\nspec:\n  source: {repoURL: " + repo + ", path: web}\n  destination: {server: https://kubernetes.default.svc, namespace: web}\n",
		"web/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {v: \"" + value + "\"}\n",
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := discovery.Discover(context.Background(), []discovery.Root{{Name: "prod", RepoURL: repo, Path: "apps", Clusters: labels.Everything()}},
		known(clusters), discovery.Sources{Trees: revisionTrees{dir}})
	if len(res.Errors) > 0 || len(res.RootErrors) > 0 || len(res.Apps) != 1 {
		t.Fatalf("discovery: %+v", res)
	}
	return res
}

func known(names []string) []appspec.Cluster {
	out := make([]appspec.Cluster, len(names))
	for i, n := range names {
		out[i] = appspec.Cluster{Name: n}
	}
	return out
}

func TestPinHoldsAcrossRestartsUntilGitChanges(t *testing.T) {
	b, _, p := newPublisher(t)
	ctx := t.Context()
	publish := func(p *Publisher, value string) *Report {
		t.Helper()
		r, err := p.Publish(ctx, discover(t, value), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	latest := func(p *Publisher) (uint64, bool) {
		ds := p.Latest("prod-eu", "web")
		return ds.GetHistoryId(), ds.GetPin() != nil
	}
	publish(p, "1")
	publish(p, "2")
	target, err := p.Entry(ctx, "prod-eu", "web", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Rollback(ctx, target, "oncall", ""); err != nil {
		t.Fatal(err)
	}
	if id, pinned := latest(p); id != 3 || !pinned {
		t.Fatalf("after rollback: history %d, pinned %t", id, pinned)
	}

	// A restarted hub loads the pin with the desired state and keeps it
	// while Git says the same.
	restarted := New(b, p.Keys(), slog.Default())
	if err := restarted.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if r := publish(restarted, "2"); r.Pinned != 1 || len(r.Published) != 0 {
		t.Errorf("same Git after a restart: %+v, want the key left pinned", r)
	}
	if id, pinned := latest(restarted); id != 3 || !pinned {
		t.Errorf("after a restart: history %d, pinned %t", id, pinned)
	}

	// A change to the application in Git releases the pin.
	if r := publish(restarted, "3"); len(r.Released) != 1 || r.Released[0] != appkey.Join("prod-eu", "web") {
		t.Errorf("a Git change: %+v, want the pin released", r)
	}
	if id, pinned := latest(restarted); id != 4 || pinned {
		t.Errorf("after a Git change: history %d, pinned %t", id, pinned)
	}

	// So does an unpin, even with Git unchanged.
	target, err = restarted.Entry(ctx, "prod-eu", "web", 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.Rollback(ctx, target, "oncall", ""); err != nil {
		t.Fatal(err)
	}
	if got := restarted.Unpin([]string{appkey.Join("prod-eu", "web"), appkey.Join("prod-eu", "other")}); len(got) != 1 {
		t.Errorf("Unpin returned %v, want the one pinned key", got)
	}
	publish(restarted, "3")
	if id, pinned := latest(restarted); id != 6 || pinned {
		t.Errorf("after unpin: history %d, pinned %t", id, pinned)
	}
}
