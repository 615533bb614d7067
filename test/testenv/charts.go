package testenv

import (
	"bytes"
	"crypto/subtle"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/provenance"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"
)

// ChartSpec is a chart a test builds: its Chart.yaml, values and
// templates, and its dependencies (vendored in charts/ when in Subcharts,
// named in Chart.yaml either way).
type ChartSpec struct {
	Name, Version string
	Values        string
	// Templates maps a file under templates/ to its content.
	Templates    map[string]string
	Dependencies []*chart.Dependency
	// Lock, when set, is written as Chart.lock.
	Lock      *chart.Lock
	Subcharts []ChartSpec
}

// Chart builds the chart in memory, as Helm's loader would read it.
func (s ChartSpec) Chart(t TB) *chart.Chart {
	t.Helper()
	c := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: s.Name, Version: s.Version, Dependencies: s.Dependencies},
		Lock:     s.Lock,
		Values:   map[string]any{},
	}
	if s.Values != "" {
		if err := yaml.Unmarshal([]byte(s.Values), &c.Values); err != nil {
			t.Fatalf("testenv: chart %s values: %v", s.Name, err)
		}
		c.Raw = append(c.Raw, &chart.File{Name: chartutil.ValuesfileName, Data: []byte(s.Values)})
	}
	for name, content := range s.Templates {
		c.Templates = append(c.Templates, &chart.File{Name: "templates/" + name, Data: []byte(content)})
	}
	for _, sub := range s.Subcharts {
		c.AddDependency(sub.Chart(t))
	}
	return c
}

// Package writes the chart's archive with Helm's own packager (what
// `helm package` writes) and returns its bytes.
func (s ChartSpec) Package(t TB) []byte {
	t.Helper()
	file, err := chartutil.Save(s.Chart(t), t.TempDir())
	if err != nil {
		t.Fatalf("testenv: package chart %s: %v", s.Name, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// SaveDir writes the chart as a directory under dir (dir/<name>), as a
// chart kept in Git.
func (s ChartSpec) SaveDir(t TB, dir string) {
	t.Helper()
	if err := chartutil.SaveDir(s.Chart(t), dir); err != nil {
		t.Fatalf("testenv: save chart %s: %v", s.Name, err)
	}
	if s.Lock != nil {
		data, err := yaml.Marshal(s.Lock)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s.Name, "Chart.lock"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// HelmRepository is a Helm chart repository served over HTTPS with basic
// auth, as ChartMuseum or GitHub Pages serve one: index.yaml (with an ETag,
// answering conditional requests) and the chart archives it lists.
type HelmRepository struct {
	// URL is the repository's URL (https://127.0.0.1:PORT/charts).
	URL string
	// CAFile holds the server's certificate, to trust it.
	CAFile             string
	Username, Password string

	mu       sync.Mutex
	index    *repo.IndexFile
	archives map[string][]byte
	modified time.Time

	// IndexRequests, IndexNotModified and ChartDownloads count what
	// clients asked.
	IndexRequests, IndexNotModified, ChartDownloads atomic.Int64
	// Unauthorized counts requests refused for their credentials.
	Unauthorized atomic.Int64
}

// NewHelmRepository starts an empty repository, stopped when the test
// ends.
func NewHelmRepository(t TB, username, password string) *HelmRepository {
	t.Helper()
	r := &HelmRepository{Username: username, Password: password, index: repo.NewIndexFile(), archives: map[string][]byte{}, modified: time.Now()}
	srv := httptest.NewTLSServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL + "/charts"
	r.CAFile = writeServerCA(t, srv)
	return r
}

// Add packages spec and lists it in the index.
func (r *HelmRepository) Add(t TB, spec ChartSpec) []byte {
	t.Helper()
	data := spec.Package(t)
	digest, err := provenance.Digest(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	file := spec.Name + "-" + spec.Version + ".tgz"
	md := spec.Chart(t).Metadata
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.index.MustAdd(md, file, "", digest); err != nil {
		t.Fatalf("testenv: index %s: %v", file, err)
	}
	r.index.SortEntries()
	r.archives[file] = data
	r.modified = r.modified.Add(time.Second)
	return data
}

// Remove deletes a version from the index and its archive, as a
// repository that pruned it.
func (r *HelmRepository) Remove(name, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vs := r.index.Entries[name]
	for i, v := range vs {
		if v.Version == version {
			r.index.Entries[name] = append(vs[:i:i], vs[i+1:]...)
			break
		}
	}
	delete(r.archives, name+"-"+version+".tgz")
	r.modified = r.modified.Add(time.Second)
}

func (r *HelmRepository) serve(w http.ResponseWriter, req *http.Request) {
	user, pass, ok := req.BasicAuth()
	if r.Username != "" && (!ok || subtle.ConstantTimeCompare([]byte(user), []byte(r.Username)) != 1 || subtle.ConstantTimeCompare([]byte(pass), []byte(r.Password)) != 1) {
		r.Unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	name, ok := strings.CutPrefix(req.URL.Path, "/charts/")
	if !ok {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "index.yaml" {
		r.IndexRequests.Add(1)
		data, err := yaml.Marshal(r.index)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("ETag", `"`+provenanceDigest(data)+`"`)
		cw := &statusRecorder{ResponseWriter: w}
		http.ServeContent(cw, req, "index.yaml", r.modified, bytes.NewReader(data))
		if cw.status == http.StatusNotModified {
			r.IndexNotModified.Add(1)
		}
		return
	}
	data, ok := r.archives[name]
	if !ok {
		http.NotFound(w, req)
		return
	}
	r.ChartDownloads.Add(1)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(data)
}

func provenanceDigest(data []byte) string {
	d, _ := provenance.Digest(bytes.NewReader(data))
	return d
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// OCIRegistry is an OCI registry (go-containerregistry's) served over
// HTTPS with basic auth, in the test process.
type OCIRegistry struct {
	// Host is host:port; charts are at oci://Host/<path>.
	Host               string
	CAFile             string
	Username, Password string
	client             *http.Client
}

// NewOCIRegistry starts an empty registry, stopped when the test ends.
func NewOCIRegistry(t TB, username, password string) *OCIRegistry {
	t.Helper()
	handler := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(username)) != 1 || subtle.ConstantTimeCompare([]byte(pass), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		handler.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return &OCIRegistry{
		Host: strings.TrimPrefix(srv.URL, "https://"), CAFile: writeServerCA(t, srv),
		Username: username, Password: password, client: srv.Client(),
	}
}

// Push pushes a chart archive to oci://Host/<path>/<name>:<version> with
// Helm's registry client (`helm push`).
func (r *OCIRegistry) Push(t TB, path string, archive []byte, name, version string) {
	t.Helper()
	client, err := registry.NewClient(
		registry.ClientOptHTTPClient(r.client),
		registry.ClientOptBasicAuth(r.Username, r.Password),
		registry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "credentials.json")),
	)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimSuffix(r.Host+"/"+strings.Trim(path, "/"), "/") + "/" + name + ":" + version
	if _, err := client.Push(archive, ref, registry.PushOptStrictMode(true)); err != nil {
		t.Fatalf("testenv: push %s: %v", ref, err)
	}
}

// writeServerCA writes a test server's certificate as a PEM CA file.
func writeServerCA(t TB, srv *httptest.Server) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// DeploymentChart is a chart of one Deployment, named
// <release>-<chart>, running values.image with values.replicas: the
// smallest chart that shows which version and values were rendered.
func DeploymentChart(name, version, image string) ChartSpec {
	return ChartSpec{
		Name: name, Version: version, Values: "image: " + image + "\nreplicas: 1\n",
		Templates: map[string]string{"deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
  labels: {chart: {{ .Chart.Name }}-{{ .Chart.Version }}}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: {{ .Release.Name }}-{{ .Chart.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}-{{ .Chart.Name }}}}
    spec:
      containers: [{name: main, image: {{ .Values.image | quote }}}]
`},
	}
}
