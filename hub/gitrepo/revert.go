package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Errors a Revert returns.
var (
	// ErrNothingToRevert is a branch on which no commit changed the paths.
	ErrNothingToRevert = errors.New("no commit changed the application's files")
	// ErrRevertConflict is a commit whose files changed again since, so
	// undoing it needs a person.
	ErrRevertConflict = errors.New("revert conflicts with later changes")
	// ErrPushRejected is a push the remote refused (branch moved on,
	// protected branch, no write access).
	ErrPushRejected = errors.New("push rejected")
)

// Author is who a commit the hub writes is by.
type Author struct {
	Name, Email string
}

// RevertResult describes a pushed revert commit.
type RevertResult struct {
	Branch   string
	Reverted *object.Commit
	Commit   plumbing.Hash
	Message  string
	// Files are the paths the revert changed.
	Files []string
}

// Revert pushes to branch a commit that undoes the newest commit on it that
// changed any of paths, as `git revert` does: the whole commit is undone,
// and a file it touched that changed again since is a conflict, for which
// nothing is pushed. The push is not forced, so a branch that moved on
// meanwhile is refused rather than overwritten. note ends the message.
func (m *Mirror) Revert(ctx context.Context, branch string, paths []string, author Author, note string) (*RevertResult, error) {
	refs, err := m.RemoteRefs(ctx)
	if err != nil {
		return nil, err
	}
	head, ok := refs["refs/heads/"+branch]
	if !ok {
		return nil, fmt.Errorf("%s: %q is not a branch, so there is nothing to push a revert to", m.repo.URL, branch)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Fetch the objects but leave the recorded refs alone: the next poll
	// must still see anything new and reconcile it.
	if err := m.fetch(ctx); err != nil {
		return nil, err
	}
	headCommit, err := m.git.CommitObject(head)
	if err != nil {
		return nil, err
	}
	target, err := m.lastChange(head, paths)
	if err != nil {
		return nil, err
	}
	if target.NumParents() != 1 {
		return nil, fmt.Errorf("%s: commit %s is a merge or root commit: %w", m.repo.URL, target.Hash, ErrRevertConflict)
	}
	parent, err := target.Parent(0)
	if err != nil {
		return nil, err
	}
	changes, files, err := m.inverse(parent, target, headCommit)
	if err != nil {
		return nil, err
	}
	headTree, err := headCommit.Tree()
	if err != nil {
		return nil, err
	}
	tree, err := writeTree(m.git.Storer, headTree, changes)
	if err != nil {
		return nil, err
	}
	subject, _, _ := strings.Cut(target.Message, "\n")
	msg := fmt.Sprintf("Revert %q\n\nThis reverts commit %s.\n\n%s\n", subject, target.Hash, note)
	sig := object.Signature{Name: author.Name, Email: author.Email, When: time.Now()}
	commit := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: []plumbing.Hash{head}}
	hash, err := store(m.git.Storer, commit)
	if err != nil {
		return nil, err
	}

	// Push from a private ref; refs/heads/* mirror the remote and change
	// only by fetching.
	local := plumbing.ReferenceName("refs/flotilla/revert")
	if err := m.git.Storer.SetReference(plumbing.NewHashReference(local, hash)); err != nil {
		return nil, err
	}
	defer m.git.Storer.RemoveReference(local)
	remote := git.NewRemote(m.git.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{m.fetchURL()}})
	err = remote.PushContext(ctx, &git.PushOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(local.String() + ":refs/heads/" + branch)},
		Auth:       m.repo.Auth,
		// The remote must still be where this revert was made from.
		RequireRemoteRefs: []config.RefSpec{config.RefSpec(head.String() + ":refs/heads/" + branch)},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w to %s: %w", m.repo.URL, ErrPushRejected, branch, redact(err))
	}
	return &RevertResult{Branch: branch, Reverted: target, Commit: hash, Message: msg, Files: files}, nil
}

// lastChange is the newest commit reachable from head (first parents)
// that changed a file under any of paths.
func (m *Mirror) lastChange(head plumbing.Hash, paths []string) (*object.Commit, error) {
	touches := func(file string) bool {
		for _, p := range paths {
			if file == p || strings.HasPrefix(file, strings.TrimSuffix(p, "/")+"/") {
				return true
			}
		}
		return false
	}
	iter, err := m.git.Log(&git.LogOptions{From: head, PathFilter: touches})
	if err != nil {
		return nil, err
	}
	defer iter.Close()
	c, err := iter.Next()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", m.repo.URL, ErrNothingToRevert)
	}
	return c, err
}

// fileChange is what a revert does to one path: set it to a blob, or
// delete it when hash is zero.
type fileChange struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// inverse computes the changes that undo target (relative to parent) on
// head, refusing files head changed again.
func (m *Mirror) inverse(parent, target, head *object.Commit) (map[string]fileChange, []string, error) {
	parentTree, err := parent.Tree()
	if err != nil {
		return nil, nil, err
	}
	targetTree, err := target.Tree()
	if err != nil {
		return nil, nil, err
	}
	headTree, err := head.Tree()
	if err != nil {
		return nil, nil, err
	}
	diff, err := parentTree.Diff(targetTree)
	if err != nil {
		return nil, nil, err
	}
	changes := map[string]fileChange{}
	var files []string
	for _, c := range diff {
		before, after := c.From, c.To // parent's and target's side
		name := after.Name
		if name == "" {
			name = before.Name
		}
		if before.Name != "" && after.Name != "" && before.Name != after.Name {
			return nil, nil, fmt.Errorf("%s: commit %s renames %s: %w", m.repo.URL, target.Hash, before.Name, ErrRevertConflict)
		}
		now, err := headTree.FindEntry(name)
		switch {
		case after.Name == "" && err == nil:
			return nil, nil, fmt.Errorf("%s: %s was deleted by %s and exists again: %w", m.repo.URL, name, target.Hash.String()[:8], ErrRevertConflict)
		case after.Name != "" && (err != nil || now.Hash != after.TreeEntry.Hash):
			return nil, nil, fmt.Errorf("%s: %s changed again after %s: %w", m.repo.URL, name, target.Hash.String()[:8], ErrRevertConflict)
		}
		if before.Name == "" {
			changes[name] = fileChange{} // added by target: delete
		} else {
			changes[name] = fileChange{hash: before.TreeEntry.Hash, mode: before.TreeEntry.Mode}
		}
		files = append(files, name)
	}
	if len(changes) == 0 {
		return nil, nil, fmt.Errorf("%s: commit %s changes no file: %w", m.repo.URL, target.Hash, ErrNothingToRevert)
	}
	slices.Sort(files)
	return changes, files, nil
}

// writeTree stores base with changes applied (paths relative to base) and
// returns the new tree's hash. Directories left empty are dropped.
func writeTree(s storer.EncodedObjectStorer, base *object.Tree, changes map[string]fileChange) (plumbing.Hash, error) {
	direct := map[string]fileChange{}
	nested := map[string]map[string]fileChange{}
	for p, c := range changes {
		dir, rest, found := strings.Cut(p, "/")
		if !found {
			direct[p] = c
			continue
		}
		if nested[dir] == nil {
			nested[dir] = map[string]fileChange{}
		}
		nested[dir][rest] = c
	}
	var entries []object.TreeEntry
	seen := map[string]bool{}
	if base != nil {
		for _, e := range base.Entries {
			seen[e.Name] = true
			switch c, ok := direct[e.Name]; {
			case ok && c.hash.IsZero():
				continue
			case ok:
				e.Hash, e.Mode = c.hash, c.mode
			case nested[e.Name] != nil && e.Mode == filemode.Dir:
				sub, err := base.Tree(e.Name)
				if err != nil {
					return plumbing.ZeroHash, err
				}
				h, err := writeTree(s, sub, nested[e.Name])
				if err != nil {
					return plumbing.ZeroHash, err
				}
				if h.IsZero() {
					continue
				}
				e.Hash = h
			}
			entries = append(entries, e)
		}
	}
	for name, c := range direct {
		if !seen[name] && !c.hash.IsZero() {
			entries = append(entries, object.TreeEntry{Name: name, Mode: c.mode, Hash: c.hash})
		}
	}
	for name, sub := range nested {
		if seen[name] {
			continue
		}
		h, err := writeTree(s, nil, sub)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if !h.IsZero() {
			entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
		}
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, nil
	}
	// Git orders entries by name, a directory as if its name ended in "/".
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	slices.SortFunc(entries, func(a, b object.TreeEntry) int { return strings.Compare(key(a), key(b)) })
	return store(s, &object.Tree{Entries: entries})
}

type encodable interface {
	Encode(plumbing.EncodedObject) error
}

func store(s storer.EncodedObjectStorer, o encodable) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

// DefaultBranch is the branch the remote's HEAD points to.
func (m *Mirror) DefaultBranch(ctx context.Context) (string, error) {
	_, head, err := m.listRemote(ctx)
	if err != nil {
		return "", err
	}
	if !head.IsBranch() {
		return "", fmt.Errorf("%s: the remote's HEAD is not a branch", m.repo.URL)
	}
	return head.Short(), nil
}
