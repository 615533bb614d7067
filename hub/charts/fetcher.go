package charts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-dev/flotilla/internal/artifact"
)

// Options configure a Fetcher.
type Options struct {
	// Dir holds the cache: indexes, archives and unpacked charts.
	Dir string
	// RefreshInterval is how long an index or tag list is trusted before
	// it is asked again.
	RefreshInterval time.Duration
	// Repositories are the configured repositories (charts.repositories).
	Repositories []Repository
	// Timeout bounds each request to a repository.
	Timeout time.Duration
	// MaxIndexSize bounds a repository's index.yaml.
	MaxIndexSize int64
	// MaxChartSize bounds a chart archive, and any other response.
	MaxChartSize int64
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// DefaultOptions are sized for real repositories: the largest public
// index.yaml files are tens of MiB (Bitnami's was over 20), charts a few.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:             dir,
		RefreshInterval: 3 * time.Minute,
		Timeout:         time.Minute,
		MaxIndexSize:    128 << 20,
		MaxChartSize:    artifact.DefaultLimits().MaxArchive,
		Now:             time.Now,
	}
}

// Chart is a chart version read from a repository and unpacked in the
// cache: render it with Root Dir and Path Name.
type Chart struct {
	// RepoURL is the repository as the Application named it.
	RepoURL string
	Name    string
	// Version is what the requested version or range resolved to.
	Version string
	// Digest is "sha256:<hex>" of the archive.
	Digest string
	// Dir holds the chart in the directory Name.
	Dir string
}

// ErrVersionNotFound is a chart or version the repository does not have.
var ErrVersionNotFound = errors.New("chart version not found")

// Fetcher reads charts from Helm repositories and OCI registries, with a
// cache. It is safe for concurrent use.
type Fetcher struct {
	opts  Options
	repos []Repository

	mu      sync.Mutex
	clients map[*Repository]*http.Client
	indexes map[string]*cachedIndex
	tags    map[string]*cachedTags
	pulled  map[string]*pulledChart
	// resolved are the charts Chart returned, by what it was asked: within
	// the refresh interval the same question gets the same answer without
	// reading the index or the archive again.
	resolved map[string]*resolvedChart
	// vendored are the chart directories whose dependencies are complete.
	// Directories are content-addressed (a checkout by commit, a chart by
	// digest), so one is vendored once.
	vendored map[string]bool
	// unpackMu serialises writes to the cache directories.
	unpackMu sync.Mutex
}

type resolvedChart struct {
	chart   Chart
	checked time.Time
}

// New returns a Fetcher caching in opts.Dir.
func New(opts Options) (*Fetcher, error) {
	def := DefaultOptions(opts.Dir)
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = def.RefreshInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = def.Timeout
	}
	if opts.MaxIndexSize <= 0 {
		opts.MaxIndexSize = def.MaxIndexSize
	}
	if opts.MaxChartSize <= 0 {
		opts.MaxChartSize = def.MaxChartSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for _, sub := range []string{"indexes", "archives", "unpacked"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	repos := make([]Repository, len(opts.Repositories))
	copy(repos, opts.Repositories)
	return &Fetcher{
		opts: opts, repos: repos,
		clients:  map[*Repository]*http.Client{},
		indexes:  map[string]*cachedIndex{},
		tags:     map[string]*cachedTags{},
		pulled:   map[string]*pulledChart{},
		resolved: map[string]*resolvedChart{},
		vendored: map[string]bool{},
	}, nil
}

// Chart returns the chart name of the repository at repoURL, at version: an
// exact version or a semver range (Argo CD's targetRevision), resolved to
// the highest version that matches. For an OCI repoURL, an empty name means
// the URL names the chart itself. It returns an error wrapping
// ErrVersionNotFound when the repository has no such chart or version.
func (f *Fetcher) Chart(ctx context.Context, repoURL, name, version string) (*Chart, error) {
	question := repoURL + "\x00" + name + "\x00" + version
	f.mu.Lock()
	r := f.resolved[question]
	f.mu.Unlock()
	if r != nil && f.fresh(r.checked) {
		ch := r.chart
		return &ch, nil
	}
	ch, err := f.fetch(ctx, repoURL, name, version)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.resolved[question] = &resolvedChart{chart: *ch, checked: f.opts.Now()}
	f.mu.Unlock()
	return ch, nil
}

// fetch resolves and fetches a chart, from the caches where they are
// fresh.
func (f *Fetcher) fetch(ctx context.Context, repoURL, name, version string) (*Chart, error) {
	loc, err := parseLocation(repoURL, f.ociPath)
	if err != nil {
		return nil, err
	}
	repo, err := f.repository(loc)
	if err != nil {
		return nil, err
	}
	var ch *Chart
	if loc.scheme == "oci" {
		ch, err = f.ociChart(ctx, repo, loc, name, version)
	} else {
		if name == "" {
			return nil, fmt.Errorf("repository %s: chart is required", loc)
		}
		ch, err = f.httpChart(ctx, repo, loc, name, version)
	}
	if err != nil {
		return nil, err
	}
	ch.RepoURL = repoURL
	return ch, nil
}

// store keeps a verified archive and unpacks it, once per digest: the
// chart is then at <Dir>/unpacked/<hex>/<name>. It checks that the archive
// holds the chart it was asked for.
func (f *Fetcher) store(data []byte, name, version string) (*Chart, error) {
	digest := artifact.Digest(data)
	hexDigest := strings.TrimPrefix(digest, artifact.DigestPrefix)
	f.unpackMu.Lock()
	defer f.unpackMu.Unlock()
	archive := filepath.Join(f.opts.Dir, "archives", hexDigest+".tgz")
	if _, err := os.Stat(archive); err != nil {
		if err := writeAtomic(archive, data); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(f.opts.Dir, "unpacked", hexDigest)
	if _, err := os.Stat(dir); err != nil {
		tmp, err := os.MkdirTemp(filepath.Join(f.opts.Dir, "unpacked"), ".tmp-")
		if err != nil {
			return nil, err
		}
		if err := artifact.Unpack(data, tmp, artifact.DefaultLimits()); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("chart %s-%s: %w", name, version, err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, name, "Chart.yaml")); err != nil {
		return nil, fmt.Errorf("chart %s-%s: the archive holds no %s/Chart.yaml", name, version, name)
	}
	return &Chart{Name: name, Version: version, Digest: digest, Dir: dir}, nil
}

// archive returns a cached archive by digest.
func (f *Fetcher) archive(digest string) ([]byte, bool) {
	data, err := os.ReadFile(filepath.Join(f.opts.Dir, "archives", strings.TrimPrefix(digest, artifact.DigestPrefix)+".tgz"))
	if err != nil || artifact.Verify(data, digest) != nil {
		return nil, false
	}
	return data, true
}

// writeAtomic writes data beside path and renames it into place.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
