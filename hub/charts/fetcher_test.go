package charts

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/flotilla-dev/flotilla/internal/artifact"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// fakeClock is the Fetcher's clock in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFetcher(t *testing.T, clock *fakeClock, repos ...Repository) *Fetcher {
	t.Helper()
	opts := DefaultOptions(t.TempDir())
	opts.Repositories = repos
	if clock != nil {
		opts.Now = clock.Now
	}
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func webChart(name, version, image string) testenv.ChartSpec {
	return testenv.DeploymentChart(name, version, image)
}

func TestChartFromAHelmRepository(t *testing.T) {
	hr := testenv.NewHelmRepository(t, "reader", "s3cret-pass")
	for _, v := range []string{"1.0.0", "1.2.0", "1.10.1", "2.0.0-rc.1"} {
		hr.Add(t, webChart("web", v, "nginx:"+v))
	}
	f := newFetcher(t, nil, Repository{URL: hr.URL, Username: "reader", Password: "s3cret-pass", CAFile: hr.CAFile})
	ctx := context.Background()

	tests := []struct{ version, want string }{
		{"1.2.0", "1.2.0"},
		{"1.*", "1.10.1"},
		{">=1.0.0 <1.5.0", "1.2.0"},
		{"*", "1.10.1"}, // pre-releases only when asked for
		{"2.0.0-rc.1", "2.0.0-rc.1"},
	}
	for _, tc := range tests {
		ch, err := f.Chart(ctx, hr.URL, "web", tc.version)
		if err != nil {
			t.Fatalf("%s: %v", tc.version, err)
		}
		if ch.Version != tc.want {
			t.Errorf("version %q resolved to %s, want %s", tc.version, ch.Version, tc.want)
		}
		loaded, err := loader.Load(filepath.Join(ch.Dir, ch.Name))
		if err != nil {
			t.Fatal(err)
		}
		if loaded.Metadata.Version != tc.want {
			t.Errorf("the cache holds %s for %s", loaded.Metadata.Version, tc.want)
		}
		data, err := os.ReadFile(filepath.Join(f.opts.Dir, "archives", strings.TrimPrefix(ch.Digest, artifact.DigestPrefix)+".tgz"))
		if err != nil || artifact.Verify(data, ch.Digest) != nil {
			t.Errorf("archive of %s not cached under its digest: %v", ch.Version, err)
		}
	}

	_, err := f.Chart(ctx, hr.URL, "web", "3.x")
	if !errors.Is(err, ErrVersionNotFound) || !strings.Contains(err.Error(), "1.10.1") {
		t.Errorf("a missing version: got %v, want ErrVersionNotFound naming the versions there are", err)
	}
	_, err = f.Chart(ctx, hr.URL, "db", "1.0.0")
	if !errors.Is(err, ErrVersionNotFound) || !strings.Contains(err.Error(), `no chart "db"`) {
		t.Errorf("a missing chart: got %v", err)
	}

	wrong := newFetcher(t, nil, Repository{URL: hr.URL, Username: "reader", Password: "wrong-pass", CAFile: hr.CAFile})
	_, err = wrong.Chart(ctx, hr.URL, "web", "1.0.0")
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "wrong-pass") {
		t.Errorf("wrong credentials: got %v, want a 401 naming no password", err)
	}
	untrusted := newFetcher(t, nil, Repository{URL: hr.URL, Username: "reader", Password: "s3cret-pass"})
	if _, err := untrusted.Chart(ctx, hr.URL, "web", "1.0.0"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a server the CA does not vouch for: got %v", err)
	}
}

func TestIndexIsCachedAndAskedAgainConditionally(t *testing.T) {
	hr := testenv.NewHelmRepository(t, "", "")
	hr.Add(t, webChart("web", "1.0.0", "nginx:1"))
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	f := newFetcher(t, clock, Repository{URL: hr.URL, CAFile: hr.CAFile})
	ctx := context.Background()

	first, err := f.Chart(ctx, hr.URL, "web", "1.x")
	if err != nil {
		t.Fatal(err)
	}
	if got := hr.IndexRequests.Load(); got != 1 {
		t.Fatalf("index requests = %d after the first fetch, want 1", got)
	}
	clock.Advance(time.Minute)
	if _, err := f.Chart(ctx, hr.URL, "web", "1.x"); err != nil {
		t.Fatal(err)
	}
	if got := hr.IndexRequests.Load(); got != 1 {
		t.Errorf("index requests = %d within the refresh interval, want 1", got)
	}
	clock.Advance(3 * time.Minute)
	again, err := f.Chart(ctx, hr.URL, "web", "1.x")
	if err != nil {
		t.Fatal(err)
	}
	if hr.IndexRequests.Load() != 2 || hr.IndexNotModified.Load() != 1 {
		t.Errorf("after the interval: %d index requests, %d answered 304; want 2 and 1", hr.IndexRequests.Load(), hr.IndexNotModified.Load())
	}
	if got := hr.ChartDownloads.Load(); got != 1 {
		t.Errorf("chart downloads = %d, want 1: nothing changed", got)
	}
	if again.Digest != first.Digest {
		t.Errorf("digest moved from %s to %s", first.Digest, again.Digest)
	}

	// A version published after the last refresh is asked for at once.
	clock.Advance(10 * time.Second)
	hr.Add(t, webChart("web", "1.1.0", "nginx:1.1"))
	ch, err := f.Chart(ctx, hr.URL, "web", "1.1.0")
	if err != nil {
		t.Fatalf("a version newer than the cached index: %v", err)
	}
	if ch.Version != "1.1.0" {
		t.Errorf("got %s", ch.Version)
	}

	// A version that does not exist asks the index again once; asked
	// again, it does not.
	before := hr.IndexRequests.Load()
	for range 3 {
		if _, err := f.Chart(ctx, hr.URL, "web", "9.9.9"); !errors.Is(err, ErrVersionNotFound) {
			t.Fatalf("a version that does not exist: %v", err)
		}
	}
	if got := hr.IndexRequests.Load() - before; got != 1 {
		t.Errorf("three passes asking for a missing version made %d index requests, want 1", got)
	}

	// A version the repository removed fails with ErrVersionNotFound; the
	// hub keeps the last good state (hub tests).
	clock.Advance(10 * time.Minute)
	hr.Remove("web", "1.0.0")
	if _, err := f.Chart(ctx, hr.URL, "web", "1.0.0"); !errors.Is(err, ErrVersionNotFound) {
		t.Errorf("a removed version: got %v", err)
	}
}

func TestChartFromAnOCIRegistry(t *testing.T) {
	reg := testenv.NewOCIRegistry(t, "puller", "oci-pass")
	for _, v := range []string{"0.9.0", "1.0.0", "1.3.2"} {
		reg.Push(t, "charts", webChart("web", v, "nginx:"+v).Package(t), "web", v)
	}
	repo := Repository{URL: "oci://" + reg.Host + "/charts", Username: "puller", Password: "oci-pass", CAFile: reg.CAFile}
	f := newFetcher(t, nil, repo)
	ctx := context.Background()

	tests := []struct{ repoURL, chart, version, want string }{
		{"oci://" + reg.Host + "/charts", "web", "1.0.0", "1.0.0"},
		{"oci://" + reg.Host + "/charts", "web", "^1.0.0", "1.3.2"},
		{"oci://" + reg.Host + "/charts", "web", "<1.0.0", "0.9.0"},
		// Argo CD's form for an OCI Helm repository: no scheme, the
		// repository configured with enableOCI.
		{reg.Host + "/charts", "web", "1.*", "1.3.2"},
		// Argo CD's OCI source: the URL names the chart.
		{"oci://" + reg.Host + "/charts/web", "", "0.9.0", "0.9.0"},
	}
	for _, tc := range tests {
		ch, err := f.Chart(ctx, tc.repoURL, tc.chart, tc.version)
		if err != nil {
			t.Fatalf("%s %s %s: %v", tc.repoURL, tc.chart, tc.version, err)
		}
		if ch.Version != tc.want || ch.Name != "web" {
			t.Errorf("%s %s %q: got %s %s, want web %s", tc.repoURL, tc.chart, tc.version, ch.Name, ch.Version, tc.want)
		}
		if _, err := loader.Load(filepath.Join(ch.Dir, "web")); err != nil {
			t.Errorf("%s: %v", tc.want, err)
		}
	}
	if _, err := f.Chart(ctx, "oci://"+reg.Host+"/charts", "web", "~2.0"); !errors.Is(err, ErrVersionNotFound) || !strings.Contains(err.Error(), "1.3.2") {
		t.Errorf("a missing range: got %v", err)
	}

	anonymous := newFetcher(t, nil, Repository{URL: "oci://" + reg.Host, CAFile: reg.CAFile})
	if _, err := anonymous.Chart(ctx, "oci://"+reg.Host+"/charts", "web", "1.0.0"); err == nil || strings.Contains(err.Error(), "oci-pass") {
		t.Errorf("without credentials: got %v, want a refusal", err)
	}
	if _, err := f.Chart(ctx, "elsewhere.example/charts", "web", "1.0.0"); err == nil || !strings.Contains(err.Error(), "no scheme") {
		t.Errorf("a registry path not configured with enableOCI: got %v", err)
	}
}

func TestVendorBuildsDependenciesAsHelmDoes(t *testing.T) {
	hr := testenv.NewHelmRepository(t, "reader", "pw")
	for _, v := range []string{"12.1.0", "12.5.3"} {
		hr.Add(t, webChart("postgresql", v, "postgres:"+v))
	}
	reg := testenv.NewOCIRegistry(t, "puller", "pw2")
	for _, v := range []string{"17.0.0", "17.2.0"} {
		reg.Push(t, "charts", webChart("redis", v, "redis:"+v).Package(t), "redis", v)
	}
	f := newFetcher(t, nil,
		Repository{URL: hr.URL, Name: "upstream", Username: "reader", Password: "pw", CAFile: hr.CAFile},
		Repository{URL: "oci://" + reg.Host, Username: "puller", Password: "pw2", CAFile: reg.CAFile},
	)
	root := t.TempDir()
	webChart("common", "0.3.0", "busybox").SaveDir(t, filepath.Join(root, "libs"))
	app := testenv.ChartSpec{
		Name: "shop", Version: "1.0.0",
		Dependencies: []*chart.Dependency{
			{Name: "postgresql", Version: "12.x", Repository: hr.URL},
			{Name: "redis", Version: "~17.0", Repository: "oci://" + reg.Host + "/charts"},
			{Name: "common", Version: "0.3.0", Repository: "file://../../libs/common"},
			{Name: "vendored", Version: "1.0.0", Repository: hr.URL},
		},
		// Chart.lock pins postgresql below what the range allows.
		Lock: &chart.Lock{Dependencies: []*chart.Dependency{
			{Name: "postgresql", Version: "12.1.0", Repository: hr.URL},
			{Name: "redis", Version: "17.0.0", Repository: "oci://" + reg.Host + "/charts"},
			{Name: "common", Version: "0.3.0", Repository: "file://../../libs/common"},
			{Name: "vendored", Version: "1.0.0", Repository: hr.URL},
		}},
		Subcharts: []testenv.ChartSpec{webChart("vendored", "1.0.0", "vendored:1")},
	}
	app.SaveDir(t, filepath.Join(root, "charts"))
	chartDir := filepath.Join(root, "charts", "shop")
	if err := f.Vendor(context.Background(), root, chartDir); err != nil {
		t.Fatal(err)
	}
	loaded, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range loaded.Dependencies() {
		got[d.Name()] = d.Metadata.Version
	}
	want := map[string]string{"postgresql": "12.1.0", "redis": "17.0.0", "common": "0.3.0", "vendored": "1.0.0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dependencies (-want +got):\n%s", diff)
	}
	downloads := hr.ChartDownloads.Load()
	if err := f.Vendor(context.Background(), root, chartDir); err != nil {
		t.Fatal(err)
	}
	if hr.ChartDownloads.Load() != downloads {
		t.Errorf("vendoring again downloaded charts")
	}

	// Without a lock, the constraint picks the highest version; "@name"
	// names a configured repository.
	root2 := t.TempDir()
	testenv.ChartSpec{Name: "shop", Version: "1.0.0", Dependencies: []*chart.Dependency{
		{Name: "postgresql", Version: "12.x", Repository: "@upstream"},
	}}.SaveDir(t, root2)
	if err := f.Vendor(context.Background(), root2, filepath.Join(root2, "shop")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root2, "shop", "charts", "postgresql-12.5.3.tgz")); err != nil {
		t.Errorf("the highest version in range was not vendored: %v", err)
	}
}

func TestVendorNamesTheDependencyThatFails(t *testing.T) {
	hr := testenv.NewHelmRepository(t, "", "")
	f := newFetcher(t, nil, Repository{URL: hr.URL, CAFile: hr.CAFile})
	tests := []struct {
		name string
		dep  *chart.Dependency
		want []string
	}{
		{"missing chart", &chart.Dependency{Name: "redis", Version: "1.x", Repository: hr.URL}, []string{`dependency "redis"`, hr.URL, "no chart"}},
		{"unreachable", &chart.Dependency{Name: "redis", Version: "1.x", Repository: "https://127.0.0.1:1/charts"}, []string{`dependency "redis"`, "127.0.0.1:1", "refused"}},
		{"file outside the repository", &chart.Dependency{Name: "x", Version: "1.0.0", Repository: "file://../../../../../etc"}, []string{`dependency "x"`, "outside the repository"}},
		{"unknown name", &chart.Dependency{Name: "x", Version: "1.0.0", Repository: "@nowhere"}, []string{`no repository named "nowhere"`}},
		{"no repository", &chart.Dependency{Name: "x", Version: "1.0.0"}, []string{"not in charts/"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			testenv.ChartSpec{Name: "app", Version: "1.0.0", Dependencies: []*chart.Dependency{tc.dep}}.SaveDir(t, root)
			err := f.Vendor(context.Background(), root, filepath.Join(root, "app"))
			if err == nil {
				t.Fatal("vendored")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestIndexOverTheLimitIsRefused(t *testing.T) {
	hr := testenv.NewHelmRepository(t, "", "")
	for i := range 40 {
		hr.Add(t, webChart("web", "1.0."+string(rune('0'+i%10))+string(rune('0'+i/10)), "nginx"))
	}
	opts := DefaultOptions(t.TempDir())
	opts.Repositories = []Repository{{URL: hr.URL, CAFile: hr.CAFile}}
	opts.MaxIndexSize = 1024
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Chart(context.Background(), hr.URL, "web", "*"); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("an index over the limit: got %v", err)
	}
}

func TestRepositoryMatching(t *testing.T) {
	f := newFetcher(t, nil,
		Repository{URL: "https://charts.example.com", Username: "a"},
		Repository{URL: "https://charts.example.com/private", Username: "b"},
		Repository{URL: "oci://registry.example.com/team", Username: "c"},
		Repository{URL: "http://plain.example.com", PlainHTTP: true},
	)
	tests := []struct{ url, want string }{
		{"https://charts.example.com/public", "a"},
		{"https://charts.example.com/private/x", "b"},
		{"https://charts.example.com/privatex", "a"},
		{"oci://registry.example.com/team/app", "c"},
		{"registry.example.com/team/app", "c"},
		{"https://other.example.com", ""},
	}
	for _, tc := range tests {
		loc, err := parseLocation(tc.url, f.ociPath)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		r, err := f.repository(loc)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if r.Username != tc.want {
			t.Errorf("%s matched %q, want %q", tc.url, r.Username, tc.want)
		}
	}
	loc, _ := parseLocation("http://unlisted.example.com", f.ociPath)
	if _, err := f.repository(loc); err == nil {
		t.Error("an unlisted plain-HTTP repository was allowed")
	}
}

func FuzzParseIndex(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nentries:\n  web:\n  - name: web\n    version: 1.0.0\n    urls: [web-1.0.0.tgz]\n"))
	f.Add([]byte("apiVersion: v1\nentries:\n  web:\n  - null\n"))
	f.Add([]byte(`{"apiVersion":"v1","entries":{"x":[{"name":"x","version":"not-semver"}]}}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, err := parseIndex(data, filepath.Join(dir, "index.yaml"))
		if err != nil {
			return
		}
		for name := range idx.Entries {
			_, _ = idx.Get(name, "*")
		}
	})
}
