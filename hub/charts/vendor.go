package charts

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/Masterminds/semver/v3"
	chartpkg "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
)

// maxDependencyDepth bounds file:// dependencies that name others.
const maxDependencyDepth = 5

// Vendor puts into chartDir/charts the dependencies its Chart.yaml names
// that are not there yet, as `helm dependency build` does: each at the
// version Chart.lock pins, else the highest its constraint allows, from
// its repository (https://, oci://, "@name" or "alias:name" of a configured
// repository), or copied from a file:// path inside root. Vendored charts
// are used as they are. A chart that does not load is left to the render
// to report. The error names the dependency and its repository.
func (f *Fetcher) Vendor(ctx context.Context, root, chartDir string) error {
	// A directory is vendored once; one checked out again (its Chart.yaml
	// written anew) is another.
	info, err := os.Stat(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return nil // not a chart: the render says so
	}
	key := fmt.Sprintf("%s\x00%d", chartDir, info.ModTime().UnixNano())
	f.mu.Lock()
	done := f.vendored[key]
	f.mu.Unlock()
	if done {
		return nil
	}
	if err := f.vendor(ctx, root, chartDir, chartDir, 0); err != nil {
		return err
	}
	f.mu.Lock()
	f.vendored[key] = true
	f.mu.Unlock()
	return nil
}

// vendor vendors chartDir's dependencies; file:// paths are relative to
// base, where the chart's files came from.
func (f *Fetcher) vendor(ctx context.Context, root, chartDir, base string, depth int) error {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil
	}
	for _, dep := range ch.Metadata.Dependencies {
		if dep == nil || vendored(ch, dep.Name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.vendorOne(ctx, root, chartDir, base, ch.Lock, dep, depth); err != nil {
			return fmt.Errorf("dependency %q of chart %s (repository %q, version %q): %w", dep.Name, ch.Name(), dep.Repository, dep.Version, err)
		}
	}
	return nil
}

func (f *Fetcher) vendorOne(ctx context.Context, root, chartDir, base string, lock *chartpkg.Lock, dep *chartpkg.Dependency, depth int) error {
	version := dep.Version
	if lock != nil {
		locked, err := lockedVersion(lock, dep)
		if err != nil {
			return err
		}
		version = locked
	}
	repoURL := dep.Repository
	switch {
	case repoURL == "":
		return fmt.Errorf("it is not in charts/ and names no repository")
	case strings.HasPrefix(repoURL, "file://"):
		if depth >= maxDependencyDepth {
			return fmt.Errorf("file:// dependencies nest deeper than %d", maxDependencyDepth)
		}
		return f.copyLocal(ctx, root, chartDir, base, dep, depth)
	case strings.HasPrefix(repoURL, "@"), strings.HasPrefix(repoURL, "alias:"):
		name := strings.TrimPrefix(strings.TrimPrefix(repoURL, "@"), "alias:")
		r, ok := f.named(name)
		if !ok {
			return fmt.Errorf("no repository named %q in charts.repositories", name)
		}
		repoURL = r.URL
	}
	ch, err := f.Chart(ctx, repoURL, dep.Name, version)
	if err != nil {
		return err
	}
	data, ok := f.archive(ch.Digest)
	if !ok {
		return fmt.Errorf("the archive of %s-%s left the cache", ch.Name, ch.Version)
	}
	charts := filepath.Join(chartDir, "charts")
	if err := os.MkdirAll(charts, 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(charts, fmt.Sprintf("%s-%s.tgz", ch.Name, ch.Version)), data)
}

// lockedVersion is the version Chart.lock pins for dep; a lock that does
// not list it, or lists another repository or a version outside the
// constraint, is out of sync with Chart.yaml, as Helm reports.
func lockedVersion(lock *chartpkg.Lock, dep *chartpkg.Dependency) (string, error) {
	for _, l := range lock.Dependencies {
		if l == nil || l.Name != dep.Name || l.Repository != dep.Repository {
			continue
		}
		if c, err := semver.NewConstraint(cmp.Or(dep.Version, "*")); err == nil {
			if v, err := semver.NewVersion(l.Version); err != nil || !c.Check(v) {
				continue
			}
		}
		return l.Version, nil
	}
	return "", errors.New("the lock (Chart.lock) is out of sync with Chart.yaml: run `helm dependency update` and commit Chart.lock")
}

// copyLocal copies a file:// dependency's directory into charts/<name>,
// as Helm packs it there: only regular files, only from inside root.
func (f *Fetcher) copyLocal(ctx context.Context, root, chartDir, base string, dep *chartpkg.Dependency, depth int) error {
	src := filepath.Join(base, filepath.FromSlash(strings.TrimPrefix(dep.Repository, "file://")))
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	realSrc, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("the directory does not exist")
	}
	if rel, err := filepath.Rel(realRoot, realSrc); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("the directory is outside the repository")
	}
	local, err := loader.Load(realSrc)
	if err != nil {
		return err
	}
	if local.Name() != dep.Name {
		return fmt.Errorf("the directory holds chart %q", local.Name())
	}
	if c, err := semver.NewConstraint(cmp.Or(dep.Version, "*")); err == nil {
		if v, err := semver.NewVersion(local.Metadata.Version); err != nil || !c.Check(v) {
			return fmt.Errorf("%w: the directory holds version %s", ErrVersionNotFound, local.Metadata.Version)
		}
	}
	charts := filepath.Join(chartDir, "charts")
	if err := os.MkdirAll(charts, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(charts, ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	err = filepath.WalkDir(realSrc, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(realSrc, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		target := filepath.Join(tmp, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		return err
	}
	if err := f.vendor(ctx, root, tmp, realSrc, depth+1); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(charts, dep.Name))
}

// vendored reports whether charts/ holds the dependency called name.
func vendored(ch *chartpkg.Chart, name string) bool {
	for _, d := range ch.Dependencies() {
		if d.Name() == name {
			return true
		}
	}
	return false
}
