package flotillatest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flotilla-dev/flotilla/hub"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/bus"
	"github.com/flotilla-dev/flotilla/internal/clustercreds"
	"github.com/flotilla-dev/flotilla/internal/natsauth"
	"github.com/flotilla-dev/flotilla/internal/telemetry"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// The fixture repository, and the secrets of the hub StartHub runs.
const (
	// RepoURL is how the fixture's Applications name their repository; the
	// hub fetches it from the test git server.
	RepoURL = "https://github.com/your-org/gitops-config"
	// FixtureRepo is the fixture repository's name on the test git server.
	FixtureRepo = "gitops-config"
	// WebhookSecret signs the push webhooks the hub accepts.
	WebhookSecret = "webhook-s3cret"
	// ViewerToken is the API token "ops" (role viewer), read from a file.
	ViewerToken = "viewer-t0ken"
	// OperatorToken is the API token "oncall" (role operator), read from
	// the environment.
	OperatorToken = "operator-t0ken"
	// AdminToken is the API token "root" (role admin), which adds and
	// revokes clusters.
	AdminToken = "admin-t0ken"

	gitUser     = "hub"
	gitPassword = "git-s3cret"
	// operatorTokenEnv is where the hub reads OperatorToken from.
	operatorTokenEnv = "FLOTILLA_OPERATOR_TOKEN"
	// adminTokenEnv is where the hub reads AdminToken from.
	adminTokenEnv = "FLOTILLA_ADMIN_TOKEN"
)

// Repository is one more repository for the hub to poll.
type Repository struct {
	// URL is how Applications name it.
	URL string
	// FetchURL is where the hub fetches it from: a URL, or the bare name
	// of a repository on the hub's test git server (which need not exist).
	FetchURL string
}

// HubOptions configure StartHub.
type HubOptions struct {
	// GitCredentials makes the test git server require basic auth, and
	// gives the hub a username and a password file for it, as production
	// hubs have.
	GitCredentials bool
	// PollInterval is how often the hub polls each repository. The
	// default, an hour, leaves the test to drive it with Webhook.
	PollInterval time.Duration
	// Repositories are polled beside the fixture repository.
	Repositories []Repository
	// Log receives the hub's log; nil writes it to the test's log.
	Log *slog.Logger
	// Tracing sets up tracing as cmd/hub does (telemetry.Setup), so the
	// published desired states carry the hub's trace context.
	Tracing bool
	// ExternalNATS runs the hub against a NATS server its operator runs
	// (nats.url) instead of the embedded one; nil embeds it.
	ExternalNATS *ExternalNATS
	// Charts is the hub's charts configuration (Helm repositories and OCI
	// registries).
	Charts config.Charts
}

// ExternalNATS is a NATS server the hub does not run, as nats.url,
// nats.credentialsFile and nats.caFile configure it. Its operator signs
// the users: the hub's, and each cluster's, which the hub's bundles then
// lack (write clustercreds.NATSCredsFile into Hub.Credentials' directory).
type ExternalNATS struct {
	// URL is the server's client URL, tls://host:port.
	URL string
	// CredentialsFile is the hub's user, with natsauth.HubPermissions.
	// Hub.Bus connects with it too.
	CredentialsFile string
	// CAFile is the CA of the server's certificate.
	CAFile string
}

// Hub is a running hub on the fixture repository, with its API and the
// embedded NATS server (unless HubOptions.ExternalNATS) on loopback ports.
type Hub struct {
	// Git serves the fixture repository (FixtureRepo), branch main.
	Git *testenv.GitServer
	// Server is the hub itself, for what its API does not show
	// (Published, Clusters).
	Server *hub.Hub
	// APIURL is the base URL of the hub's API, webhook and /metrics,
	// served over TLS with a certificate of the hub's private CA.
	APIURL string
	// CAFile is the hub's private CA; StartHub sets FLOTILLA_CA_FILE to
	// it, so the CLI trusts the hub as an operator's would.
	CAFile string
	// HTTP is a client that trusts CAFile.
	HTTP *http.Client
	// NATSURL is the NATS server's client URL, for agents.
	NATSURL string
	// Bus is a client of the hub's buckets and streams with the hub's own
	// permissions, signed with the operator keys in the hub's data dir
	// (with an external NATS, as the hub's own user).
	Bus *bus.Bus
	// NATS is Bus's connection.
	NATS *nats.Conn
	// PublicKeyPEM is the hub's public key as its API serves it.
	PublicKeyPEM []byte

	// bundles are the credentials directories of the clusters added.
	bundles map[string]string
	log     *slog.Logger
	// owner is the test that started the hub: the hub runs until it ends,
	// restarted or not.
	owner testenv.TB
	// cfg is the configuration Server runs on; stop stops it.
	cfg  *config.Config
	stop func(testenv.TB)
}

// start runs a hub on cfg, serving its API on ln, until the owner test
// ends or Restart stops it.
func (h *Hub) start(cfg *config.Config, ln net.Listener) {
	t := h.owner
	t.Helper()
	server, err := hub.New(t.Context(), cfg, h.log)
	if err != nil {
		ln.Close()
		t.Fatalf("flotillatest: start hub: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, ln) }()
	var once sync.Once
	stop := func(t testenv.TB) {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("flotillatest: hub: %v", err)
			}
			server.Close()
		})
	}
	t.Cleanup(func() { stop(t) })
	h.Server, h.cfg, h.stop = server, cfg, stop
}

// Restart stops the hub, its API and its embedded NATS server, and starts
// it again on the same configuration, data and addresses, as an
// operator's restart does: agents and API clients find it where it was.
// It returns once the new hub serves its API, which runs until the test
// that started it ends (t may be one of its subtests).
func (h *Hub) Restart(t testenv.TB) {
	t.Helper()
	h.stop(t)
	cfg := *h.cfg
	if h.cfg.NATS.URL == "" {
		cfg.NATS.EmbeddedListen = strings.TrimPrefix(h.NATSURL, "tls://")
	}
	ln, err := net.Listen("tcp", strings.TrimPrefix(h.APIURL, "https://"))
	if err != nil {
		t.Fatalf("flotillatest: listen again: %v", err)
	}
	h.start(&cfg, ln)
	testenv.WaitServing(t, h.HTTP, h.APIURL, 2*time.Minute)
}

// StartHub pushes the fixture repository to a test git server and starts
// a hub with embedded NATS (or opts.ExternalNATS) on it, with a webhook
// secret (WebhookSecret) and a viewer and an operator API token
// (ViewerToken, OperatorToken). Everything stops when the test ends.
func StartHub(t testenv.TB, opts HubOptions) *Hub {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Hour
	}
	gitOpts := testenv.GitServerOptions{}
	if opts.GitCredentials {
		gitOpts = testenv.GitServerOptions{Username: gitUser, Password: gitPassword}
	}
	h := &Hub{Git: testenv.NewGitServer(t, gitOpts), bundles: map[string]string{}}
	h.Git.CreateRepo(t, FixtureRepo)
	h.Git.PushDir(t, FixtureRepo, "main", "initial import", testenv.Fixture(t, FixtureRepo))

	dir := t.TempDir()
	writeFile := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	setenv(t, operatorTokenEnv, OperatorToken)
	setenv(t, adminTokenEnv, AdminToken)
	var repos strings.Builder
	fmt.Fprintf(&repos, "  - url: %s\n    fetchURL: %s\n    pollInterval: %s\n", RepoURL, h.Git.RepoURL(FixtureRepo), opts.PollInterval)
	if opts.GitCredentials {
		fmt.Fprintf(&repos, "    auth: {username: %s, passwordFile: %s}\n", gitUser, writeFile("git-password", gitPassword+"\n"))
	}
	for _, r := range opts.Repositories {
		fetch := r.FetchURL
		if !strings.Contains(fetch, "://") {
			fetch = h.Git.RepoURL(fetch)
		}
		fmt.Fprintf(&repos, "  - url: %s\n    fetchURL: %s\n    pollInterval: %s\n", r.URL, fetch, opts.PollInterval)
	}
	natsConfig := `{embeddedListen: "127.0.0.1:-1"}`
	if x := opts.ExternalNATS; x != nil {
		natsConfig = fmt.Sprintf("{url: %q, credentialsFile: %q, caFile: %q}", x.URL, x.CredentialsFile, x.CAFile)
	}
	chartsConfig, err := json.Marshal(chartsYAML(opts.Charts))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("hub.yaml", []byte(fmt.Sprintf(`
dataDir: %s
nats: %s
charts: %s
repositories:
%sroots:
  - name: production
    repo: %s
    path: apps
    clusters: env=production
webhook:
  secretFile: %s
api:
  tokens:
    - {name: ops, role: viewer, tokenFile: %s}
    - {name: oncall, role: operator, tokenEnv: %s}
    - {name: root, role: admin, tokenEnv: %s}
`, filepath.Join(dir, "data"), natsConfig, chartsConfig, repos.String(), RepoURL, writeFile("webhook-secret", WebhookSecret), writeFile("api-token", ViewerToken), operatorTokenEnv, adminTokenEnv)))
	if err != nil {
		t.Fatalf("flotillatest: hub config: %v", err)
	}

	if opts.Tracing {
		shutdown, err := telemetry.Setup(t.Context(), "flotilla-hub-test")
		if err != nil {
			t.Fatalf("flotillatest: tracing: %v", err)
		}
		t.Cleanup(func() { _ = shutdown(context.Background()) })
	}
	h.log = opts.Log
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(testLog{t}, nil))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.APIURL = "https://" + ln.Addr().String()
	h.owner = t
	h.start(cfg, ln)
	h.NATSURL = h.Server.NATSURL()
	h.CAFile = h.Server.CAFile()
	setenv(t, "FLOTILLA_CA_FILE", h.CAFile)
	ca, err := os.ReadFile(h.CAFile)
	if err != nil {
		t.Fatalf("flotillatest: the hub's CA: %v", err)
	}
	tlsConfig, err := tlsca.ClientConfig(ca)
	if err != nil {
		t.Fatalf("flotillatest: the hub's CA: %v", err)
	}
	h.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}

	// The key as an agent's operator fetches it: through the API.
	resp, err := h.HTTP.Get(h.APIURL + "/api/public-key")
	if err != nil {
		t.Fatalf("flotillatest: public key: %v", err)
	}
	h.PublicKeyPEM, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("flotillatest: public key: %s %v", resp.Status, err)
	}
	natsOpts := []nats.Option{nats.Name("flotillatest")}
	if x := opts.ExternalNATS; x != nil {
		natsOpts = append(natsOpts, nats.UserCredentials(x.CredentialsFile), nats.RootCAs(x.CAFile))
	} else {
		authority, err := natsauth.LoadOrCreate(filepath.Join(dir, "data", "trust"))
		if err != nil {
			t.Fatalf("flotillatest: the hub's NATS keys: %v", err)
		}
		creds, _, err := authority.User("flotillatest", natsauth.HubPermissions())
		if err != nil {
			t.Fatal(err)
		}
		user, err := natsauth.Credentials(creds)
		if err != nil {
			t.Fatal(err)
		}
		natsOpts = append(natsOpts, user, nats.Secure(tlsConfig))
	}
	nc, err := nats.Connect(h.NATSURL, natsOpts...)
	if err != nil {
		t.Fatalf("flotillatest: connect to the hub's NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	h.NATS = nc
	if h.Bus, err = bus.Bind(t.Context(), nc); err != nil {
		t.Fatalf("flotillatest: open the hub's bus: %v", err)
	}
	return h
}

// chartsYAML is the charts configuration as the hub's file reads it.
func chartsYAML(c config.Charts) map[string]any {
	out := map[string]any{"repositories": c.Repositories}
	if c.RefreshInterval.Duration > 0 {
		out["refreshInterval"] = c.RefreshInterval.String()
	}
	if c.Repositories == nil {
		out["repositories"] = []config.ChartRepository{}
	}
	return out
}

// Credentials adds cluster name with labels through the API, as an admin
// does with `flotilla cluster add --out`, and returns the directory of its
// credentials bundle, for an agent's --credentials. Later calls for the
// same name return the same bundle.
func (h *Hub) Credentials(t testenv.TB, name string, labels map[string]string) string {
	t.Helper()
	if dir, ok := h.bundles[name]; ok {
		return dir
	}
	dir := filepath.Join(t.TempDir(), name+"-credentials")
	args := []string{"cluster", "add", name, "--out", dir, "--hub", h.APIURL, "--token", AdminToken}
	if len(labels) > 0 {
		args = append(args, "--labels", labels2String(labels))
	}
	var stdout, stderr bytes.Buffer
	if code := RunCLI(t, &stdout, &stderr, args...); code != 0 {
		t.Fatalf("flotillatest: flotilla cluster add %s: exit %d: %s", name, code, stderr.String())
	}
	h.bundles[name] = dir
	return dir
}

// Label replaces cluster name's labels, as an admin does with `flotilla
// cluster label`.
func (h *Hub) Label(t testenv.TB, name string, labels map[string]string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := RunCLI(t, &stdout, &stderr, "cluster", "label", name, "--labels", labels2String(labels), "--hub", h.APIURL, "--token", AdminToken); code != 0 {
		t.Fatalf("flotillatest: flotilla cluster label %s: exit %d: %s", name, code, stderr.String())
	}
}

func labels2String(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for k, v := range labels {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// ClusterNATS connects to the hub's NATS with cluster name's credentials
// (Credentials adds it with labels if it is new), as its agent does.
func (h *Hub) ClusterNATS(t testenv.TB, name string, labels map[string]string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	bundle, err := clustercreds.Read(h.Credentials(t, name, labels))
	if err != nil {
		t.Fatal(err)
	}
	clusterOpts, err := natsauth.ClusterOptions(name, bundle.GetNatsCreds())
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := tlsca.ClientConfig(bundle.GetCa())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(bundle.GetNatsUrl(), append(append(clusterOpts, nats.Secure(tlsConfig)), opts...)...)
	if err != nil {
		t.Fatalf("flotillatest: connect as cluster %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ClusterConn is ClusterNATS as a bus client.
func (h *Hub) ClusterConn(t testenv.TB, name string, labels map[string]string, opts ...nats.Option) *bus.Conn {
	t.Helper()
	c, err := bus.Open(h.ClusterNATS(t, name, labels, opts...))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setenv sets an environment variable until the test ends, through the
// test's own Setenv where it has one (testing.TB does).
func setenv(t testenv.TB, key, value string) {
	if s, ok := t.(interface{ Setenv(key, value string) }); ok {
		s.Setenv(key, value)
		return
	}
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	})
}

// Commit commits files (path → content; empty content removes the file)
// to the fixture repository's main branch, as CI does, and returns the
// commit's SHA. The hub sees it on the next Webhook (or poll).
func (h *Hub) Commit(t testenv.TB, message string, files map[string]string) string {
	t.Helper()
	return h.Git.WriteFiles(t, FixtureRepo, "main", message, files)
}

// Webhook posts a GitHub push event for the fixture repository, signed
// with secret, and returns the HTTP status (202 when the hub took it).
func (h *Hub) Webhook(t testenv.TB, secret string) int {
	t.Helper()
	return PostWebhook(t, h.HTTP, h.APIURL, secret)
}

// PostWebhook posts the push event Hub.Webhook does to the hub at apiURL.
func PostWebhook(t testenv.TB, client *http.Client, apiURL, secret string) int {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main","repository":{"clone_url":"` + RepoURL + `.git","html_url":"` + RepoURL + `"}}`)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, apiURL+"/api/webhook", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("flotillatest: webhook: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Register adds a cluster with labels (Credentials) and writes the
// registration its agent would (through Bus: one connection for any
// number of clusters).
func (h *Hub) Register(t testenv.TB, name string, labels map[string]string) {
	t.Helper()
	h.Credentials(t, name, labels)
	if err := h.Bus.Register(t.Context(), &flotillav1.ClusterRegistration{SchemaVersion: 1, Name: name}); err != nil {
		t.Fatalf("flotillatest: register %s: %v", name, err)
	}
}

// PublicKeyFile writes the hub's public key to a file, for an agent's
// --hub-public-key, and returns its path.
func (h *Hub) PublicKeyFile(t testenv.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.pub")
	if err := os.WriteFile(path, h.PublicKeyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// WaitStatus waits until the app status an agent reported for (cluster,
// app) satisfies ok, and returns it; it fails the test with ok's last
// error after timeout.
func (h *Hub) WaitStatus(t testenv.TB, cluster, app string, timeout time.Duration, ok func(*flotillav1.AppStatus) error) *flotillav1.AppStatus {
	t.Helper()
	var st *flotillav1.AppStatus
	testenv.Eventually(t, timeout, func() error {
		var err error
		if st, err = h.Bus.GetStatus(context.Background(), cluster, app); err != nil {
			return err
		}
		if err := ok(st); err != nil {
			return fmt.Errorf("status of %s/%s (history %d, %v): %w", cluster, app, st.GetHistoryId(), st.GetPhase(), err)
		}
		return nil
	})
	return st
}

// testLog writes each line into the test's log.
type testLog struct{ t testenv.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimSpace(string(p)))
	return len(p), nil
}
