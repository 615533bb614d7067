package gitrepo

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

func TestMirrorFollowsRevisionsAndForcePushes(t *testing.T) {
	git := testenv.NewGitServer(t, testenv.GitServerOptions{Username: "hub", Password: "pw"})
	git.CreateRepo(t, "r")
	first := git.WriteFiles(t, "r", "main", "first", map[string]string{"app/cm.yaml": "v: 1\n"})
	second := git.WriteFiles(t, "r", "main", "second", map[string]string{"app/cm.yaml": "v: 2\n"})
	release := git.WriteFiles(t, "r", "release-1", "release branch", map[string]string{"app/cm.yaml": "v: release\n"})
	tag(t, git.BareDir("r"), "v1.0.0", first)

	m, err := OpenMirror(t.TempDir(), Repository{URL: "https://example.com/r", FetchURL: git.RepoURL("r"), Auth: &githttp.BasicAuth{Username: "hub", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func() {
		t.Helper()
		refs, err := m.RemoteRefs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !m.Changed(refs) {
			t.Fatal("refs moved but Changed is false")
		}
		if err := m.Fetch(context.Background(), refs); err != nil {
			t.Fatal(err)
		}
		if m.Changed(refs) {
			t.Fatal("Changed after fetching those refs")
		}
	}
	fetch()
	for _, tc := range []struct{ revision, want string }{
		{"", second}, {"HEAD", second}, {"main", second}, {"release-1", release},
		{"v1.0.0", first}, {first, first}, {first[:10], first},
	} {
		c, err := m.Resolve(tc.revision)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", tc.revision, err)
		}
		if c.Hash.String() != tc.want {
			t.Errorf("Resolve(%q) = %s, want %s", tc.revision, c.Hash, tc.want)
		}
	}
	if _, err := m.Resolve("no-such-branch"); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("unknown branch: %v, want ErrUnknownRevision", err)
	}

	// A force-push rewrites main back to a new commit on top of first.
	forced := forcePush(t, git, "r", first)
	fetch()
	c, err := m.Resolve("main")
	if err != nil || c.Hash.String() != forced {
		t.Fatalf("after force-push main = %v, %v; want %s", c, err, forced)
	}
	dir := t.TempDir()
	if err := m.Checkout(c, dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "app/cm.yaml"))
	if err != nil || string(data) != "v: forced\n" {
		t.Fatalf("checkout: %q, %v", data, err)
	}
}

func TestMirrorErrorsNameTheRepoWithoutSecrets(t *testing.T) {
	git := testenv.NewGitServer(t, testenv.GitServerOptions{Username: "hub", Password: "right"})
	git.CreateRepo(t, "r")
	m, err := OpenMirror(t.TempDir(), Repository{URL: "https://example.com/r", FetchURL: strings.Replace(git.RepoURL("r"), "http://", "http://hub:wrong-password@", 1)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.RemoteRefs(context.Background())
	if err == nil {
		t.Fatal("wrong credentials accepted")
	}
	if !strings.Contains(err.Error(), "https://example.com/r") || strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("error %q must name the repository and never the password", err)
	}
	unreachable, _ := OpenMirror(t.TempDir(), Repository{URL: "https://example.com/gone", FetchURL: "http://127.0.0.1:1/gone.git"})
	if _, err := unreachable.RemoteRefs(context.Background()); err == nil || !strings.Contains(err.Error(), "https://example.com/gone") {
		t.Fatalf("unreachable repo: %v", err)
	}
}

func tag(t *testing.T, bare, name, commit string) {
	t.Helper()
	cmd := exec.Command("git", "-c", "user.name=t", "-c", "user.email=t@t", "tag", "-a", "-m", name, name, commit)
	cmd.Dir = bare
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git tag: %v: %s", err, out)
	}
}

// forcePush replaces main with a new commit on top of base.
func forcePush(t *testing.T, git *testenv.GitServer, repo, base string) string {
	t.Helper()
	wt := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		cmd.Dir = wt
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("clone", "--quiet", strings.Replace(git.RepoURL(repo), "http://", "http://hub:pw@", 1), ".")
	run("reset", "--quiet", "--hard", base)
	if err := os.WriteFile(filepath.Join(wt, "app/cm.yaml"), []byte("v: forced\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("commit", "--quiet", "-am", "rewrite")
	run("push", "--quiet", "--force", "origin", "HEAD:main")
	return run("rev-parse", "HEAD")
}
