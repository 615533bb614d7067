package gitrepo

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestRevertPushesTheInverseOfTheLastChange(t *testing.T) {
	srv := testenv.NewGitServer(t, testenv.GitServerOptions{Username: "hub", Password: "pw"})
	srv.CreateRepo(t, "r")
	srv.WriteFiles(t, "r", "main", "initial", map[string]string{
		"charts/api/values.yaml": "tag: v1\n", "charts/api/templates/cm.yaml": "kind: ConfigMap\n", "apps/other.yaml": "x: 1\n",
	})
	bump := srv.WriteFiles(t, "r", "main", "Bump api to v2\n\nCI run 7", map[string]string{
		"charts/api/values.yaml": "tag: v2\n", "charts/api/templates/new.yaml": "kind: Secret\n", "environments/prod/api.yaml": "replicas: 3\n",
	})
	srv.WriteFiles(t, "r", "main", "unrelated change", map[string]string{"apps/other.yaml": "x: 2\n"})

	m, err := OpenMirror(t.TempDir(), Repository{URL: "https://example.com/r", FetchURL: srv.RepoURL("r"), Auth: &githttp.BasicAuth{Username: "hub", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	branch, err := m.DefaultBranch(context.Background())
	if err != nil || branch != "main" {
		t.Fatalf("DefaultBranch = %q, %v; want main", branch, err)
	}
	res, err := m.Revert(context.Background(), "main", []string{"charts/api", "environments/prod/api.yaml"}, Author{Name: "Flotilla", Email: "flotilla@example.com"}, "Requested by ops.")
	if err != nil {
		t.Fatal(err)
	}
	if res.Reverted.Hash.String() != bump {
		t.Errorf("reverted %s, want the bump %s", res.Reverted.Hash, bump)
	}
	bare := srv.BareDir("r")
	if head := srv.Head(t, "r", "main"); head != res.Commit.String() {
		t.Fatalf("remote main is %s, want the revert %s", head, res.Commit)
	}
	gitOut(t, bare, "fsck", "--strict")
	if got := gitOut(t, bare, "show", "main:charts/api/values.yaml"); got != "tag: v1" {
		t.Errorf("values.yaml after revert = %q, want tag: v1", got)
	}
	if got := gitOut(t, bare, "show", "main:apps/other.yaml"); got != "x: 2" {
		t.Errorf("a later unrelated change was lost: apps/other.yaml = %q", got)
	}
	files := gitOut(t, bare, "ls-tree", "-r", "--name-only", "main")
	for _, gone := range []string{"charts/api/templates/new.yaml", "environments/prod/api.yaml", "environments"} {
		if strings.Contains(files, gone) {
			t.Errorf("%s should be gone after the revert:\n%s", gone, files)
		}
	}
	// git itself computes the same tree for the revert.
	clone := t.TempDir()
	gitOut(t, clone, "clone", "--quiet", bare, ".")
	gitOut(t, clone, "checkout", "--quiet", res.Commit.String()+"~1")
	gitOut(t, clone, "-c", "user.name=t", "-c", "user.email=t@t", "revert", "--no-edit", bump)
	if ours, gits := gitOut(t, bare, "rev-parse", res.Commit.String()+"^{tree}"), gitOut(t, clone, "rev-parse", "HEAD^{tree}"); ours != gits {
		t.Errorf("revert tree %s, git revert gives %s", ours, gits)
	}
	if msg := gitOut(t, bare, "log", "-1", "--format=%an <%ae>%n%B", "main"); !strings.Contains(msg, `Revert "Bump api to v2"`) ||
		!strings.Contains(msg, "This reverts commit "+bump) || !strings.Contains(msg, "Flotilla <flotilla@example.com>") || !strings.Contains(msg, "Requested by ops.") {
		t.Errorf("revert commit message:\n%s", msg)
	}
}

func TestRevertRefusesConflictsAndRejectedPushes(t *testing.T) {
	srv := testenv.NewGitServer(t, testenv.GitServerOptions{})
	srv.CreateRepo(t, "r")
	srv.WriteFiles(t, "r", "main", "initial", map[string]string{"charts/api/values.yaml": "tag: v1\n", "shared.yaml": "a: 1\n"})
	srv.WriteFiles(t, "r", "main", "bump and touch shared", map[string]string{"charts/api/values.yaml": "tag: v2\n", "shared.yaml": "a: 2\n"})
	srv.WriteFiles(t, "r", "main", "shared again", map[string]string{"shared.yaml": "a: 3\n"})
	m, err := OpenMirror(t.TempDir(), Repository{URL: "https://example.com/r", FetchURL: srv.RepoURL("r")})
	if err != nil {
		t.Fatal(err)
	}
	author := Author{Name: "Flotilla", Email: "flotilla@example.com"}
	head := srv.Head(t, "r", "main")
	if _, err := m.Revert(context.Background(), "main", []string{"charts/api"}, author, ""); !errors.Is(err, ErrRevertConflict) || !strings.Contains(err.Error(), "shared.yaml") {
		t.Errorf("revert over a later change: %v, want ErrRevertConflict naming shared.yaml", err)
	}
	if now := srv.Head(t, "r", "main"); now != head {
		t.Errorf("a conflicting revert moved main from %s to %s", head, now)
	}
	if _, err := m.Revert(context.Background(), "main", []string{"no/such/path"}, author, ""); !errors.Is(err, ErrNothingToRevert) {
		t.Errorf("revert of an untouched path: %v, want ErrNothingToRevert", err)
	}
	if _, err := m.Revert(context.Background(), "v1.0.0", []string{"charts/api"}, author, ""); err == nil || !strings.Contains(err.Error(), "not a branch") {
		t.Errorf("revert on a missing branch: %v", err)
	}

	// A protected branch: the server's pre-receive hook refuses the push.
	srv.WriteFiles(t, "r", "main", "bump to v3", map[string]string{"charts/api/values.yaml": "tag: v3\n"})
	head = srv.Head(t, "r", "main")
	hook := srv.BareDir("r") + "/hooks/pre-receive"
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Revert(context.Background(), "main", []string{"charts/api"}, author, ""); !errors.Is(err, ErrPushRejected) {
		t.Errorf("push to a protected branch: %v, want ErrPushRejected", err)
	}
	if now := srv.Head(t, "r", "main"); now != head {
		t.Errorf("a refused revert moved main from %s to %s", head, now)
	}
}
