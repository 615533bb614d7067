package charts

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Repository is the credentials and trust of a Helm repository or OCI
// registry path, and of every repository under it.
type Repository struct {
	// URL is https://..., http://... or oci://...; a registry path with no
	// scheme is given here as oci://.
	URL string
	// Name is what a chart's dependencies call it ("@name", "alias:name").
	Name     string
	Username string
	Password string
	// CAFile adds a CA to the system's roots.
	CAFile string
	// PlainHTTP allows http:// and OCI over plain HTTP, without credentials.
	PlainHTTP bool
}

// location is a repoURL made canonical: the scheme ("https", "http",
// "oci") and the rest, without a trailing slash.
type location struct {
	scheme string
	rest   string
}

func (l location) String() string { return l.scheme + "://" + l.rest }

// host is the host (and port) the location names.
func (l location) host() string {
	h, _, _ := strings.Cut(l.rest, "/")
	return h
}

// parseLocation reads a repoURL. A URL without a scheme is an OCI registry
// path when ociPaths says a configured repository marks it so (Argo CD's
// enableOCI).
func parseLocation(repoURL string, ociPath func(string) bool) (location, error) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(repoURL), "://")
	if !ok {
		rest = scheme
		if !ociPath(rest) {
			return location{}, fmt.Errorf("repoURL %q has no scheme: name a Helm repository https://..., an OCI registry oci://..., or configure the registry path with enableOCI", repoURL)
		}
		scheme = "oci"
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case "https", "http", "oci":
	default:
		return location{}, fmt.Errorf("repoURL %q: charts are read from https://, http:// or oci:// repositories", repoURL)
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return location{}, fmt.Errorf("repoURL %q names no host", repoURL)
	}
	return location{scheme: scheme, rest: rest}, nil
}

// repository returns the configured repository whose URL is the longest
// prefix of l, at a path boundary, or an anonymous one.
func (f *Fetcher) repository(l location) (*Repository, error) {
	var best *Repository
	for i := range f.repos {
		r := &f.repos[i]
		c, err := parseLocation(r.URL, func(string) bool { return true })
		if err != nil || c.scheme != l.scheme {
			continue
		}
		if (l.rest == c.rest || strings.HasPrefix(l.rest, c.rest+"/")) && (best == nil || len(r.URL) > len(best.URL)) {
			best = r
		}
	}
	if best == nil {
		if l.scheme == "http" {
			return nil, fmt.Errorf("%s is plain HTTP: list it under charts.repositories with insecurePlainHTTP to allow it", l)
		}
		return &Repository{URL: l.String()}, nil
	}
	return best, nil
}

// named returns the configured repository called name.
func (f *Fetcher) named(name string) (*Repository, bool) {
	for i := range f.repos {
		if f.repos[i].Name == name {
			return &f.repos[i], true
		}
	}
	return nil, false
}

// ociPath reports whether a registry path without a scheme lies under a
// configured OCI repository.
func (f *Fetcher) ociPath(path string) bool {
	for _, r := range f.repos {
		if rest, ok := strings.CutPrefix(r.URL, "oci://"); ok && (path == rest || strings.HasPrefix(path, strings.TrimSuffix(rest, "/")+"/")) {
			return true
		}
	}
	return false
}

// client returns the HTTP client for a repository: its CA beside the
// system's roots, a timeout per request, and response bodies cut at
// the larger of the index and chart limits.
func (f *Fetcher) client(r *Repository) (*http.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[r]; ok {
		return c, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("repository %s: caFile: %w", r.URL, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("repository %s: caFile %s holds no PEM certificate", r.URL, r.CAFile)
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	transport.ResponseHeaderTimeout = f.opts.Timeout
	c := &http.Client{
		Transport: &limitedTransport{next: transport, max: max(f.opts.MaxChartSize, f.opts.MaxIndexSize)},
		Timeout:   f.opts.Timeout,
		// Credentials set on a request are not carried to another host
		// by net/http; a redirect keeps them only on the same host.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("stopped after %d redirects", len(via))
			}
			return nil
		},
	}
	f.clients[r] = c
	return c, nil
}

// limitedTransport fails a response body that passes max bytes, so no
// repository can make the hub hold more than that of one answer.
type limitedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: response of %d bytes is over the limit of %d", req.Method, redact(req), resp.ContentLength, t.max)
	}
	resp.Body = &limitedBody{body: resp.Body, left: t.max, what: req.Method + " " + redact(req)}
	return resp, nil
}

type limitedBody struct {
	body io.ReadCloser
	left int64
	what string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, fmt.Errorf("%s: response is over the size limit", b.what)
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.body.Close() }

// redact is a request's URL without user information or query, for errors.
func redact(req *http.Request) string {
	u := *req.URL
	u.User, u.RawQuery = nil, ""
	return u.String()
}

// fresh reports whether something fetched at t is still within the
// refresh interval.
func (f *Fetcher) fresh(t time.Time) bool {
	return !t.IsZero() && f.opts.Now().Sub(t) < f.opts.RefreshInterval
}
