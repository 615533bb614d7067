package gitrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Repository is one watched Git repository.
type Repository struct {
	// URL is how Applications name the repository (spec.source.repoURL).
	URL string
	// FetchURL is where to fetch from when it differs from URL (a mirror,
	// file:// or smart HTTP).
	FetchURL string
	Auth     transport.AuthMethod
}

// Mirror is a bare local copy of a Repository.
type Mirror struct {
	repo Repository
	dir  string

	mu   sync.Mutex
	git  *git.Repository
	refs map[string]plumbing.Hash // from the last fetch: "HEAD", "refs/heads/x", "refs/tags/y"
}

// Errors a Mirror returns.
var (
	// ErrUnknownRevision is a targetRevision that names no branch, tag or
	// commit of the repository.
	ErrUnknownRevision = errors.New("unknown revision")
)

// OpenMirror opens (or creates) the mirror of repo under dataDir.
func OpenMirror(dataDir string, repo Repository) (*Mirror, error) {
	sum := sha256.Sum256([]byte(repo.URL))
	dir := filepath.Join(dataDir, "repos", hex.EncodeToString(sum[:8]))
	r, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		r, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("mirror of %s: %w", repo.URL, err)
	}
	return &Mirror{repo: repo, dir: dir, git: r, refs: map[string]plumbing.Hash{}}, nil
}

// URL is the repository's URL as Applications name it.
func (m *Mirror) URL() string { return m.repo.URL }

func (m *Mirror) fetchURL() string {
	if m.repo.FetchURL != "" {
		return m.repo.FetchURL
	}
	return m.repo.URL
}

// RemoteRefs lists the remote's branches, tags and HEAD without fetching
// objects: the cheap check a poll makes.
func (m *Mirror) RemoteRefs(ctx context.Context) (map[string]plumbing.Hash, error) {
	refs, _, err := m.listRemote(ctx)
	return refs, err
}

// listRemote lists the remote's refs and the branch its HEAD points to.
func (m *Mirror) listRemote(ctx context.Context) (map[string]plumbing.Hash, plumbing.ReferenceName, error) {
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{m.fetchURL()}})
	list, err := remote.ListContext(ctx, &git.ListOptions{Auth: m.repo.Auth})
	if err != nil {
		return nil, "", fmt.Errorf("list refs of %s: %w", m.repo.URL, redact(err))
	}
	refs := map[string]plumbing.Hash{}
	var headTarget plumbing.ReferenceName
	for _, r := range list {
		name := r.Name().String()
		switch {
		case r.Type() == plumbing.SymbolicReference && name == "HEAD":
			headTarget = r.Target()
		case r.Type() == plumbing.HashReference && (name == "HEAD" || r.Name().IsBranch() || r.Name().IsTag()):
			refs[name] = r.Hash()
		}
	}
	if _, ok := refs["HEAD"]; !ok && headTarget != "" {
		refs["HEAD"] = refs[headTarget.String()]
	}
	return refs, headTarget, nil
}

// Changed reports whether refs differ from those of the last fetch.
func (m *Mirror) Changed(refs map[string]plumbing.Hash) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(refs) != len(m.refs) {
		return true
	}
	for k, v := range refs {
		if m.refs[k] != v {
			return true
		}
	}
	return false
}

// Fetch brings the mirror up to date with the remote, following
// force-pushes, and records refs as the remote's current refs.
func (m *Mirror) Fetch(ctx context.Context, refs map[string]plumbing.Hash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fetch(ctx); err != nil {
		return err
	}
	m.refs = refs
	return nil
}

// fetch brings the objects and branches up to date; m.mu must be held.
func (m *Mirror) fetch(ctx context.Context) error {
	remote := git.NewRemote(m.git.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{m.fetchURL()}})
	err := remote.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"},
		Auth:       m.repo.Auth,
		Tags:       git.NoTags,
		Force:      true,
		Prune:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("fetch %s: %w", m.repo.URL, redact(err))
	}
	return nil
}

var shaPattern = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

// Resolve turns a targetRevision into a commit: "" and "HEAD" follow the
// remote's HEAD, then a branch, a tag (annotated tags are peeled) or a
// commit SHA, in Argo CD's order.
func (m *Mirror) Resolve(revision string) (*object.Commit, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var hash plumbing.Hash
	switch {
	case revision == "" || revision == "HEAD":
		h, ok := m.refs["HEAD"]
		if !ok {
			return nil, fmt.Errorf("%s: %w: the remote has no HEAD", m.repo.URL, ErrUnknownRevision)
		}
		hash = h
	case m.refs["refs/heads/"+revision] != plumbing.ZeroHash:
		hash = m.refs["refs/heads/"+revision]
	case m.refs["refs/tags/"+revision] != plumbing.ZeroHash:
		hash = m.refs["refs/tags/"+revision]
	case strings.HasPrefix(revision, "refs/") && m.refs[revision] != plumbing.ZeroHash:
		hash = m.refs[revision]
	case shaPattern.MatchString(revision):
		h, err := m.git.ResolveRevision(plumbing.Revision(revision))
		if err != nil {
			return nil, fmt.Errorf("%s: %w %q", m.repo.URL, ErrUnknownRevision, revision)
		}
		hash = *h
	default:
		return nil, fmt.Errorf("%s: %w %q: no branch, tag or commit of that name", m.repo.URL, ErrUnknownRevision, revision)
	}
	if tag, err := m.git.TagObject(hash); err == nil {
		c, err := tag.Commit()
		if err != nil {
			return nil, fmt.Errorf("%s: tag %q: %w", m.repo.URL, revision, err)
		}
		return c, nil
	}
	c, err := m.git.CommitObject(hash)
	if err != nil {
		return nil, fmt.Errorf("%s: revision %q (%s): %w", m.repo.URL, revision, hash, err)
	}
	return c, nil
}

// Checkout writes the commit's tree into dst (created if missing). Symlinks
// and submodules are not written: a render never follows them.
func (m *Mirror) Checkout(commit *object.Commit, dst string) error {
	tree, err := commit.Tree()
	if err != nil {
		return fmt.Errorf("%s@%s: %w", m.repo.URL, commit.Hash, err)
	}
	return tree.Files().ForEach(func(f *object.File) error {
		if f.Mode != filemode.Regular && f.Mode != filemode.Executable {
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		r, err := f.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// redact strips credentials from URLs in an error message.
var userinfo = regexp.MustCompile(`://[^/@\s]+@`)

func redact(err error) error {
	msg := err.Error()
	if clean := userinfo.ReplaceAllString(msg, "://***@"); clean != msg {
		return errors.New(clean)
	}
	return err
}
