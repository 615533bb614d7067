package testenv

import (
	"crypto/subtle"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// GitServerOptions configures NewGitServer.
type GitServerOptions struct {
	// Username and Password, when set, require HTTP basic auth for every
	// request, fetch and push alike.
	Username string
	Password string
}

// GitServer serves bare repositories over git's smart HTTP protocol through
// the real `git http-backend`.
type GitServer struct {
	// URL is the server's base URL; repositories live at URL/<name>.git.
	URL  string
	root string
	opts GitServerOptions
}

// NewGitServer starts a git smart-HTTP server on a loopback port, stopped
// when the test ends.
func NewGitServer(t TB, opts GitServerOptions) *GitServer {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("testenv: git --exec-path: %v", err)
	}
	g := &GitServer{root: t.TempDir(), opts: opts}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + g.root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(g.authenticate(backend))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

func (g *GitServer) authenticate(next http.Handler) http.Handler {
	if g.opts.Username == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(g.opts.Username)) != 1 ||
			subtle.ConstantTimeCompare([]byte(pass), []byte(g.opts.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// CreateRepo makes an empty bare repository whose default branch is main and
// returns its clone URL (without credentials).
func (g *GitServer) CreateRepo(t TB, name string) string {
	t.Helper()
	dir := filepath.Join(g.root, name+".git")
	Git(t, "", "init", "--quiet", "--bare", "--initial-branch=main", dir)
	// Pushing over smart HTTP needs receive-pack enabled: the CGI handler
	// sets no REMOTE_USER, which would enable it implicitly.
	Git(t, dir, "config", "http.receivepack", "true")
	return g.RepoURL(name)
}

// RepoURL is the clone URL of a repository, without credentials.
func (g *GitServer) RepoURL(name string) string {
	return g.URL + "/" + name + ".git"
}

// BareDir is the repository's directory on disk, for file:// mirrors.
func (g *GitServer) BareDir(name string) string {
	return filepath.Join(g.root, name+".git")
}

// pushURL carries the credentials, so helpers push through the same
// authenticated HTTP path a hub fetches through.
func (g *GitServer) pushURL(name string) string {
	u, _ := url.Parse(g.RepoURL(name))
	if g.opts.Username != "" {
		u.User = url.UserPassword(g.opts.Username, g.opts.Password)
	}
	return u.String()
}

// Change edits a working copy of the repository's branch with edit, then
// commits everything with message and pushes over HTTP. It returns the new
// commit's SHA. An empty repository starts from an empty tree.
func (g *GitServer) Change(t TB, name, branch, message string, edit func(worktree string)) string {
	t.Helper()
	wt := t.TempDir()
	Git(t, "", "clone", "--quiet", g.pushURL(name), wt)
	if out := Git(t, wt, "ls-remote", "--heads", "origin", branch); out != "" {
		Git(t, wt, "checkout", "--quiet", branch)
	} else {
		Git(t, wt, "checkout", "--quiet", "--orphan", branch)
	}
	edit(wt)
	Git(t, wt, "add", "--all")
	Git(t, wt, "commit", "--quiet", "--allow-empty", "-m", message)
	Git(t, wt, "push", "--quiet", "origin", "HEAD:refs/heads/"+branch)
	return Git(t, wt, "rev-parse", "HEAD")
}

// PushDir replaces the branch's tree with a copy of dir (e.g. a fixture).
func (g *GitServer) PushDir(t TB, name, branch, message, dir string) string {
	t.Helper()
	return g.Change(t, name, branch, message, func(wt string) {
		entries, err := os.ReadDir(wt)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != ".git" {
				if err := os.RemoveAll(filepath.Join(wt, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.CopyFS(wt, os.DirFS(dir)); err != nil {
			t.Fatalf("testenv: copy %s: %v", dir, err)
		}
	})
}

// WriteFiles commits files (path → content; empty content removes the file)
// on branch and pushes.
func (g *GitServer) WriteFiles(t TB, name, branch, message string, files map[string]string) string {
	t.Helper()
	return g.Change(t, name, branch, message, func(wt string) {
		for path, content := range files {
			full := filepath.Join(wt, filepath.FromSlash(path))
			if content == "" {
				if err := os.Remove(full); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				continue
			}
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// Head returns the SHA the branch points to on the server.
func (g *GitServer) Head(t TB, name, branch string) string {
	t.Helper()
	return Git(t, g.BareDir(name), "rev-parse", "refs/heads/"+branch)
}

// Files lists the paths tracked at the tip of branch.
func (g *GitServer) Files(t TB, name, branch string) []string {
	t.Helper()
	out := Git(t, g.BareDir(name), "ls-tree", "-r", "--name-only", "refs/heads/"+branch)
	return strings.Split(out, "\n")
}

// Git runs git with args in dir (the current directory when empty) as CI
// Bot, without the system's or the user's configuration, and returns its
// output, trimmed; a failure fails the test. It is for what the GitServer
// helpers do not cover: local repositories, git log, git rev-parse.
func Git(t TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=CI Bot", "GIT_AUTHOR_EMAIL=ci@your-company.com",
		"GIT_COMMITTER_NAME=CI Bot", "GIT_COMMITTER_EMAIL=ci@your-company.com",
		"GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "HOME="+os.TempDir(),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
