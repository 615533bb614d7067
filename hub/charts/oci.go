package charts

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/registry"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// cachedTags is an OCI repository's semver tags, highest first.
type cachedTags struct {
	tags    []string
	checked time.Time
	// missed are the ranges this listing already answered with nothing
	// (see cachedIndex.missed).
	missed map[string]bool
}

// pulledChart is a chart version pulled from a registry: the archive's
// digest and the manifest's, to see whether the tag moved.
type pulledChart struct {
	digest   string
	manifest string
	checked  time.Time
}

// ociChart resolves and pulls a chart from an OCI registry, as Argo CD
// does for an OCI Helm repository: <repoURL>/<chart>:<version>, or the
// repoURL itself when it names the chart.
func (f *Fetcher) ociChart(ctx context.Context, repo *Repository, loc location, name, version string) (*Chart, error) {
	base := loc.rest
	if name != "" {
		base += "/" + name
	} else {
		name = path.Base(base)
	}
	client, err := f.registryClient(repo, loc)
	if err != nil {
		return nil, err
	}
	resolved, err := f.ociVersion(client, base, version)
	if err != nil {
		return nil, err
	}
	ref := base + ":" + resolved
	key := ref
	f.mu.Lock()
	pulled := f.pulled[key]
	f.mu.Unlock()
	if pulled != nil {
		if data, ok := f.archive(pulled.digest); ok {
			if f.fresh(pulled.checked) {
				return f.store(data, name, resolved)
			}
			// The tag may have been pushed again: one HEAD of the manifest.
			desc, err := client.Resolve(ref)
			if err != nil {
				return nil, fmt.Errorf("resolve oci://%s: %w", ref, err)
			}
			if desc.Digest.String() == pulled.manifest {
				f.mu.Lock()
				f.pulled[key] = &pulledChart{digest: pulled.digest, manifest: pulled.manifest, checked: f.opts.Now()}
				f.mu.Unlock()
				return f.store(data, name, resolved)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res, err := client.Pull(ref, registry.PullOptWithChart(true))
	if err != nil {
		return nil, fmt.Errorf("pull oci://%s: %w", ref, err)
	}
	if int64(len(res.Chart.Data)) > f.opts.MaxChartSize {
		return nil, fmt.Errorf("pull oci://%s: the chart is over the limit of %d MiB", ref, f.opts.MaxChartSize>>20)
	}
	if res.Chart.Meta != nil && res.Chart.Meta.Name != name {
		return nil, fmt.Errorf("pull oci://%s: the artifact holds chart %q, not %q", ref, res.Chart.Meta.Name, name)
	}
	ch, err := f.store(res.Chart.Data, name, resolved)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.pulled[key] = &pulledChart{digest: ch.Digest, manifest: res.Manifest.Digest, checked: f.opts.Now()}
	f.mu.Unlock()
	return ch, nil
}

// ociVersion resolves version against the repository's tags: an exact
// version is used as it is; a range picks the highest tag it allows,
// asking for the tags again when none does.
func (f *Fetcher) ociVersion(client *registry.Client, base, version string) (string, error) {
	if _, err := semver.StrictNewVersion(version); err == nil {
		return version, nil
	}
	constraint, err := semver.NewConstraint(cmp.Or(version, "*"))
	if err != nil {
		return "", fmt.Errorf("targetRevision %q is neither a version nor a semver range: %w", version, err)
	}
	cached, err := f.ociTags(client, base, false)
	if err != nil {
		return "", err
	}
	found, ok := highest(cached.tags, constraint)
	if !ok && !f.tagsMissed(cached, version) {
		// A version pushed after the tags were listed: list them again.
		if cached, err = f.ociTags(client, base, true); err != nil {
			return "", err
		}
		found, ok = highest(cached.tags, constraint)
	}
	if !ok {
		f.mu.Lock()
		cached.missed[version] = true
		f.mu.Unlock()
		have := cached.tags
		if len(have) > 5 {
			have = append(have[:5:5], "...")
		}
		return "", fmt.Errorf("%w: oci://%s has no version matching %q (it has %s)", ErrVersionNotFound, base, version, strings.Join(have, ", "))
	}
	return found, nil
}

// highest is the first (highest) of tags that constraint allows.
func highest(tags []string, constraint *semver.Constraints) (string, bool) {
	for _, t := range tags {
		if v, err := semver.NewVersion(t); err == nil && constraint.Check(v) {
			return t, true
		}
	}
	return "", false
}

func (f *Fetcher) tagsMissed(c *cachedTags, version string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return c.missed[version]
}

func (f *Fetcher) ociTags(client *registry.Client, base string, force bool) (*cachedTags, error) {
	f.mu.Lock()
	cached := f.tags[base]
	f.mu.Unlock()
	if cached != nil && !force && f.fresh(cached.checked) {
		return cached, nil
	}
	tags, err := client.Tags(base)
	if err != nil {
		return nil, fmt.Errorf("list the tags of oci://%s: %w", base, err)
	}
	next := &cachedTags{tags: tags, checked: f.opts.Now(), missed: map[string]bool{}}
	f.mu.Lock()
	f.tags[base] = next
	f.mu.Unlock()
	return next, nil
}

// registryClient is Helm's registry client for a repository, with its
// credentials for its registry host only, and none from the hub's
// environment (no Docker or Helm credential files).
func (f *Fetcher) registryClient(repo *Repository, loc location) (*registry.Client, error) {
	httpClient, err := f.client(repo)
	if err != nil {
		return nil, err
	}
	authClient := auth.Client{Client: httpClient, Cache: auth.NewCache()}
	if repo.Username != "" && !repo.PlainHTTP {
		authClient.Credential = auth.StaticCredential(loc.host(), auth.Credential{Username: repo.Username, Password: repo.Password})
	}
	opts := []registry.ClientOption{
		registry.ClientOptHTTPClient(httpClient),
		registry.ClientOptAuthorizer(authClient),
		registry.ClientOptCredentialsFile(filepath.Join(f.opts.Dir, "no-registry-credentials.json")),
		registry.ClientOptWriter(io.Discard),
	}
	if repo.PlainHTTP {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	return registry.NewClient(opts...)
}
