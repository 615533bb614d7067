package charts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	helmrepo "helm.sh/helm/v3/pkg/repo"

	"github.com/flotilla-dev/flotilla/internal/artifact"
)

// cachedIndex is a repository's index and what a conditional request for
// it needs.
type cachedIndex struct {
	index        *helmrepo.IndexFile
	etag         string
	lastModified string
	checked      time.Time
	// missed are the (chart, version) questions this fetch of the index
	// already answered with nothing: asked again, they do not make the
	// index be asked again, so an Application naming a version that does
	// not exist costs one conditional request per fetch, not one per
	// pass and Application.
	missed map[string]bool
}

// httpChart resolves and fetches a chart from a Helm repository.
func (f *Fetcher) httpChart(ctx context.Context, repo *Repository, loc location, name, version string) (*Chart, error) {
	cached, err := f.index(ctx, repo, loc, false)
	if err != nil {
		return nil, err
	}
	question := name + "\x00" + version
	cv, err := cached.index.Get(name, version)
	if err != nil && !f.missed(cached, question) {
		// A version published after the index was fetched: ask again now.
		if cached, err = f.index(ctx, repo, loc, true); err != nil {
			return nil, err
		}
		cv, err = cached.index.Get(name, version)
	}
	if err != nil {
		f.miss(cached, question)
		return nil, notFound(loc, name, version, cached.index.Entries[name])
	}
	if len(cv.URLs) == 0 {
		return nil, fmt.Errorf("chart %s-%s in %s: the index gives no URL", name, cv.Version, loc)
	}
	want := ""
	if cv.Digest != "" {
		want = artifact.DigestPrefix + strings.ToLower(cv.Digest)
		if data, ok := f.archive(want); ok {
			return f.store(data, name, cv.Version)
		}
	}
	chartURL, err := helmrepo.ResolveReferenceURL(loc.String(), cv.URLs[0])
	if err != nil {
		return nil, fmt.Errorf("chart %s-%s in %s: %w", name, cv.Version, loc, err)
	}
	data, _, err := f.get(ctx, repo, loc, chartURL, nil, f.opts.MaxChartSize)
	if err != nil {
		return nil, fmt.Errorf("chart %s-%s: %w", name, cv.Version, err)
	}
	if want != "" && artifact.Digest(data) != want {
		return nil, fmt.Errorf("chart %s-%s from %s: %w: the index says %s, the archive is %s", name, cv.Version, loc, artifact.ErrDigestMismatch, want, artifact.Digest(data))
	}
	return f.store(data, name, cv.Version)
}

// notFound names what the repository has instead.
func notFound(loc location, name, version string, versions helmrepo.ChartVersions) error {
	if len(versions) == 0 {
		return fmt.Errorf("%w: %s has no chart %q", ErrVersionNotFound, loc, name)
	}
	var have []string
	for i, v := range versions {
		if i == 5 {
			have = append(have, "...")
			break
		}
		have = append(have, v.Version)
	}
	want := version
	if want == "" {
		want = "*"
	}
	return fmt.Errorf("%w: %s has no version of chart %q matching %q (it has %s)", ErrVersionNotFound, loc, name, want, strings.Join(have, ", "))
}

// index returns the repository's index: the cached one within the refresh
// interval (unless force), else asked again with If-None-Match and
// If-Modified-Since.
func (f *Fetcher) index(ctx context.Context, repo *Repository, loc location, force bool) (*cachedIndex, error) {
	key := loc.String()
	f.mu.Lock()
	cached := f.indexes[key]
	f.mu.Unlock()
	if cached != nil && !force && f.fresh(cached.checked) {
		return cached, nil
	}
	header := http.Header{}
	if cached != nil {
		if cached.etag != "" {
			header.Set("If-None-Match", cached.etag)
		}
		if cached.lastModified != "" {
			header.Set("If-Modified-Since", cached.lastModified)
		}
	}
	data, resp, err := f.get(ctx, repo, loc, loc.String()+"/index.yaml", header, f.opts.MaxIndexSize)
	if err != nil {
		return nil, err
	}
	next := &cachedIndex{checked: f.opts.Now(), missed: map[string]bool{}}
	if resp.StatusCode == http.StatusNotModified && cached != nil {
		next.index, next.etag, next.lastModified = cached.index, cached.etag, cached.lastModified
	} else {
		sum := sha256.Sum256([]byte(key))
		if next.index, err = parseIndex(data, filepath.Join(f.opts.Dir, "indexes", hex.EncodeToString(sum[:])+".yaml")); err != nil {
			return nil, fmt.Errorf("%s/index.yaml: %w", loc, err)
		}
		next.etag, next.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	}
	f.mu.Lock()
	f.indexes[key] = next
	f.mu.Unlock()
	return next, nil
}

func (f *Fetcher) missed(c *cachedIndex, question string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return c.missed[question]
}

func (f *Fetcher) miss(c *cachedIndex, question string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.missed[question] = true
}

// parseIndex reads an index.yaml with Helm's own loader, which skips
// entries that are not valid charts, through a file at path.
func parseIndex(data []byte, path string) (idx *helmrepo.IndexFile, err error) {
	if len(data) == 0 {
		return nil, errors.New("empty index")
	}
	if err := writeAtomic(path, data); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			idx, err = nil, fmt.Errorf("not a valid index (%v)", p)
		}
	}()
	return helmrepo.LoadIndexFile(path)
}

// get fetches target, with the repository's credentials when target is on
// the repository's host and the connection is TLS. A 304 returns the
// response and no data; any status but 200 and 304 is an error.
func (f *Fetcher) get(ctx context.Context, repo *Repository, loc location, target string, header http.Header, max int64) ([]byte, *http.Response, error) {
	client, err := f.client(repo)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if repo.Username != "" && req.URL.Scheme == "https" && req.URL.Host == loc.host() {
		req.SetBasicAuth(repo.Username, repo.Password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", redact(req), unwrapURLError(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, resp, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, nil, fmt.Errorf("GET %s: %s: check the credentials of this repository in charts.repositories", redact(req), resp.Status)
	default:
		return nil, nil, fmt.Errorf("GET %s: %s", redact(req), resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", redact(req), err)
	}
	if int64(len(data)) > max {
		return nil, nil, fmt.Errorf("GET %s: more than the limit of %d MiB", redact(req), max>>20)
	}
	return data, resp, nil
}

// unwrapURLError drops url.Error's repetition of the method and URL.
func unwrapURLError(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}
