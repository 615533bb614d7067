package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// Config is the hub's configuration file (docs/hub-config.md).
type Config struct {
	// DataDir holds the signing key, Git mirrors and embedded NATS storage.
	DataDir string `json:"dataDir"`
	// Listen is the address of the API, webhook and metrics server.
	Listen string `json:"listen"`
	// TLS is the API listener's certificate.
	TLS          TLS          `json:"tls"`
	NATS         NATS         `json:"nats"`
	Repositories []Repository `json:"repositories"`
	// Charts are the Helm repositories and OCI registries Applications
	// name in spec.source.repoURL with a chart.
	Charts  Charts  `json:"charts"`
	Roots   []Root  `json:"roots"`
	Webhook Webhook `json:"webhook"`
	API     API     `json:"api"`
	// History is how many desired states per (cluster, app) are retained
	// for rollback (at most 64).
	History int `json:"history"`
	// GCInterval is how often unreferenced artifacts are deleted.
	GCInterval Duration `json:"gcInterval"`
	// CommitAuthor signs the revert commits of `flotilla app rollback --git`.
	CommitAuthor CommitAuthor `json:"commitAuthor"`
	// Replica identifies this hub among its replicas.
	Replica Replica `json:"replica"`
}

// Replica identifies a hub among the replicas that share one NATS (one of
// them leads: docs/operations.md, "Running it highly available").
type Replica struct {
	// Name is unique among the replicas (default: the host name, which a
	// StatefulSet makes unique); it names the embedded NATS server too.
	Name string `json:"name"`
	// AdvertiseURL is where the other replicas forward the calls only the
	// leader serves (default: this listener on localhost, which serves a
	// lone hub).
	AdvertiseURL string `json:"advertiseURL"`
}

// CommitAuthor is the name and email of commits the hub pushes.
type CommitAuthor struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// NATS is either an embedded server (the default) or an external one.
type NATS struct {
	// URL of an external NATS; empty runs the embedded server.
	URL string `json:"url"`
	// CredentialsFile is a NATS .creds file for the external server.
	CredentialsFile string `json:"credentialsFile"`
	// EmbeddedListen is where the embedded server accepts agents.
	EmbeddedListen string `json:"embeddedListen"`
	// Replicas of buckets and streams (3 on a NATS cluster).
	Replicas int `json:"replicas"`
	// Limits bound what JetStream keeps.
	Limits StreamLimits `json:"limits"`
	// TLS is the embedded server's certificate.
	TLS TLS `json:"tls"`
	// CAFile is the CA of an external server's certificate; empty trusts
	// the system's roots.
	CAFile string `json:"caFile"`
	// AdvertiseURL is the URL agents connect to, put into their
	// credentials bundles; empty means the embedded server's own client
	// URL (loopback), or url for an external server. A comma-separated
	// list names every server of a cluster: agents fail over among them.
	AdvertiseURL string `json:"advertiseURL"`
	// Cluster joins the embedded server to the other replicas' servers.
	Cluster NATSCluster `json:"cluster"`
}

// NATSCluster makes the embedded servers of the hub replicas one
// JetStream cluster, over routes authenticated with mutual TLS.
type NATSCluster struct {
	// Listen is where this server accepts the others' routes; empty runs
	// the embedded server alone.
	Listen string `json:"listen"`
	// Name is the cluster's, the same on every replica (default
	// "flotilla").
	Name string `json:"name"`
	// Routes are the route URLs of the replicas' servers ("tls://hub-0.hub:6222");
	// a server ignores its own.
	Routes []string `json:"routes"`
}

// StreamLimits bound JetStream's storage: the events stream by age and
// size (the oldest events go first), the artifact store by size (a
// publish that would overflow it fails, is reported and retried, and
// garbage collection makes room).
type StreamLimits struct {
	EventsMaxAge      Duration `json:"eventsMaxAge"`
	EventsMaxBytes    int64    `json:"eventsMaxBytes"`
	ArtifactsMaxBytes int64    `json:"artifactsMaxBytes"`
}

// TLS is a listener's certificate. With neither file set, the hub issues
// one from its private CA (dataDir/tls/ca.pem) for localhost, the
// loopback addresses and Hosts.
type TLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// CAFile is the CA clients are told to trust (in cluster credentials
	// bundles) when certFile is set; empty: the system's roots.
	CAFile string `json:"caFile"`
	// Hosts are the DNS names and addresses clients reach the listener
	// by, for the certificate of the private CA.
	Hosts []string `json:"hosts"`
	// InsecurePlaintext serves without TLS (behind a proxy that
	// terminates it, say). The hub logs a warning at every start.
	InsecurePlaintext bool `json:"insecurePlaintext"`
}

// Repository is a Git repository the hub watches.
type Repository struct {
	// URL is how Applications name it in spec.source.repoURL.
	URL string `json:"url"`
	// FetchURL is where to fetch from, when not URL (a mirror; file:// works).
	FetchURL     string   `json:"fetchURL"`
	PollInterval Duration `json:"pollInterval"`
	Auth         GitAuth  `json:"auth"`
}

// GitAuth are a repository's credentials, each read from a file or an
// environment variable: a password or token for HTTPS, or a private key
// for SSH with the known_hosts file that pins the server's host key.
type GitAuth struct {
	Username     string `json:"username"`
	PasswordFile string `json:"passwordFile"`
	PasswordEnv  string `json:"passwordEnv"`
	SSHKeyFile   string `json:"sshKeyFile"`
	// SSHKnownHostsFile trusts the host keys it lists; without it, those of
	// $SSH_KNOWN_HOSTS or ~/.ssh/known_hosts, as ssh does. An unknown or
	// changed host key fails the fetch.
	SSHKnownHostsFile string `json:"sshKnownHostsFile"`
}

// Charts configures how the hub reads Helm charts from Helm repositories
// and OCI registries. Only the hub reaches them: a chart travels to the
// clusters inside the application's artifact.
type Charts struct {
	// RefreshInterval is how long a repository's index (or an OCI
	// repository's tag list) is used before it is asked again, with a
	// conditional request. A version not in the cached index asks at once.
	RefreshInterval Duration `json:"refreshInterval"`
	// Repositories hold the credentials and trust of repositories, by URL
	// or URL prefix: the longest prefix of a repoURL applies. A repository
	// listed nowhere is read anonymously, over HTTPS or OCI only.
	Repositories []ChartRepository `json:"repositories"`
}

// ChartRepository is a Helm repository or OCI registry (or a prefix of
// several), as Argo CD's repository secrets describe them.
type ChartRepository struct {
	// URL is an https:// (or http://) Helm repository, an oci:// registry
	// path, or a registry path with no scheme and enableOCI.
	URL string `json:"url"`
	// Name lets a chart's dependencies name the repository as "@name" or
	// "alias:name", as after `helm repo add NAME URL`.
	Name string `json:"name"`
	// EnableOCI marks a URL without a scheme as an OCI registry, as Argo
	// CD's enableOCI does.
	EnableOCI    bool   `json:"enableOCI"`
	Username     string `json:"username"`
	PasswordFile string `json:"passwordFile"`
	PasswordEnv  string `json:"passwordEnv"`
	// CAFile is the CA that signed the repository's certificate, beside
	// the system's roots.
	CAFile string `json:"caFile"`
	// InsecurePlainHTTP allows an http:// Helm repository, or an OCI
	// registry over plain HTTP. Credentials are never sent over it.
	InsecurePlainHTTP bool `json:"insecurePlainHTTP"`
}

// Password reads the repository's password.
func (r ChartRepository) Password() (string, error) { return readSecret(r.PasswordFile, r.PasswordEnv) }

// DefaultChartRefreshInterval is Argo CD's reconciliation period: a chart
// version published upstream is seen within it; one named by a new commit
// at once.
const DefaultChartRefreshInterval = 3 * time.Minute

// Root is where application discovery starts.
type Root struct {
	Name     string `json:"name"`
	Repo     string `json:"repo"`
	Path     string `json:"path"`
	Revision string `json:"revision"`
	// Clusters is a label selector ("env=production"); empty selects all.
	Clusters string `json:"clusters"`
}

// Webhook configures push webhooks.
type Webhook struct {
	SecretFile string `json:"secretFile"`
	SecretEnv  string `json:"secretEnv"`
}

// API configures the hub's API (HubService).
type API struct {
	// Tokens are the accepted bearer tokens; with none, every call is
	// refused.
	Tokens []APIToken `json:"tokens"`
	// MetricsRequireToken serves /metrics only to a request presenting one
	// of Tokens, of any role. Off by default, for scrapers configured
	// without one.
	MetricsRequireToken bool `json:"metricsRequireToken"`
}

// APIToken is one bearer token, read from a file or environment variable.
type APIToken struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	TokenFile string `json:"tokenFile"`
	TokenEnv  string `json:"tokenEnv"`
}

// Value reads the token.
func (t APIToken) Value() (string, error) { return readSecret(t.TokenFile, t.TokenEnv) }

// Duration reads "10s"-style durations from YAML.
type Duration struct{ time.Duration }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration", s)
	}
	d.Duration = v
	return nil
}

// DefaultPollInterval is Argo CD-like but quicker: the ref listing it costs
// is one small HTTP request.
const DefaultPollInterval = 10 * time.Second

// Load reads, defaults and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse reads a configuration from data; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = "/var/lib/flotilla"
	}
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.NATS.URL == "" && c.NATS.EmbeddedListen == "" {
		c.NATS.EmbeddedListen = "0.0.0.0:4222"
	}
	if c.NATS.Limits.EventsMaxAge.Duration == 0 {
		c.NATS.Limits.EventsMaxAge.Duration = 7 * 24 * time.Hour
	}
	if c.NATS.Limits.EventsMaxBytes == 0 {
		c.NATS.Limits.EventsMaxBytes = 1 << 30
	}
	if c.NATS.Limits.ArtifactsMaxBytes == 0 {
		c.NATS.Limits.ArtifactsMaxBytes = 10 << 30
	}
	if c.NATS.Replicas == 0 {
		c.NATS.Replicas = 1
	}
	if c.NATS.Cluster.Listen != "" && c.NATS.Cluster.Name == "" {
		c.NATS.Cluster.Name = "flotilla"
	}
	if c.Replica.Name == "" {
		c.Replica.Name, _ = os.Hostname()
	}
	if c.History == 0 {
		c.History = 64
	}
	if c.CommitAuthor.Name == "" {
		c.CommitAuthor.Name = "Flotilla"
	}
	if c.CommitAuthor.Email == "" {
		c.CommitAuthor.Email = "flotilla@localhost"
	}
	if c.GCInterval.Duration == 0 {
		c.GCInterval.Duration = time.Hour
	}
	for i := range c.Repositories {
		if c.Repositories[i].PollInterval.Duration == 0 {
			c.Repositories[i].PollInterval.Duration = DefaultPollInterval
		}
	}
	if c.Charts.RefreshInterval.Duration == 0 {
		c.Charts.RefreshInterval.Duration = DefaultChartRefreshInterval
	}
	for i := range c.Roots {
		if c.Roots[i].Revision == "" {
			c.Roots[i].Revision = "HEAD"
		}
		if c.Roots[i].Name == "" {
			c.Roots[i].Name = c.Roots[i].Path
		}
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.History < 1 || c.History > 64 {
		errs = append(errs, fmt.Errorf("history: %d must be between 1 and 64", c.History))
	}
	if c.NATS.Limits.EventsMaxAge.Duration < time.Hour {
		errs = append(errs, fmt.Errorf("nats.limits.eventsMaxAge: %s is less than an hour", c.NATS.Limits.EventsMaxAge.Duration))
	}
	if c.NATS.Limits.EventsMaxBytes < 1<<20 || c.NATS.Limits.ArtifactsMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("nats.limits: eventsMaxBytes and artifactsMaxBytes must be at least 1 MiB (1048576)"))
	}
	if c.NATS.Replicas < 1 {
		errs = append(errs, fmt.Errorf("nats.replicas: %d must be at least 1", c.NATS.Replicas))
	}
	errs = append(errs, c.NATS.Cluster.validate(c.NATS))
	if c.Replica.Name == "" {
		errs = append(errs, errors.New("replica.name: is required where the host has no name"))
	}
	if u := c.Replica.AdvertiseURL; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		errs = append(errs, fmt.Errorf("replica.advertiseURL: %q is not an http(s) URL", u))
	}
	// The hub's tickers panic on an interval that is not positive.
	if c.GCInterval.Duration < 0 {
		errs = append(errs, fmt.Errorf("gcInterval: %s must be positive", c.GCInterval.Duration))
	}
	repos := map[string]bool{}
	for i, r := range c.Repositories {
		if r.URL == "" {
			errs = append(errs, fmt.Errorf("repositories[%d].url: is required", i))
		}
		repos[NormalizeURL(r.URL)] = true
		if r.PollInterval.Duration < 0 {
			errs = append(errs, fmt.Errorf("repositories[%d].pollInterval: %s must be positive", i, r.PollInterval.Duration))
		}
		if r.Auth.PasswordFile != "" && r.Auth.PasswordEnv != "" {
			errs = append(errs, fmt.Errorf("repositories[%d].auth: set passwordFile or passwordEnv, not both", i))
		}
		if r.Auth.SSHKeyFile != "" && (r.Auth.PasswordFile != "" || r.Auth.PasswordEnv != "") {
			errs = append(errs, fmt.Errorf("repositories[%d].auth: set sshKeyFile or a password, not both", i))
		}
		if r.Auth.SSHKnownHostsFile != "" && r.Auth.SSHKeyFile == "" {
			errs = append(errs, fmt.Errorf("repositories[%d].auth.sshKnownHostsFile: needs sshKeyFile", i))
		}
	}
	errs = append(errs, c.Charts.validate())
	for i, r := range c.Roots {
		if !repos[NormalizeURL(r.Repo)] {
			errs = append(errs, fmt.Errorf("roots[%d].repo: %q is not in repositories", i, r.Repo))
		}
		if r.Path == "" {
			errs = append(errs, fmt.Errorf("roots[%d].path: is required", i))
		}
		if _, err := labels.Parse(r.Clusters); err != nil {
			errs = append(errs, fmt.Errorf("roots[%d].clusters: %w", i, err))
		}
	}
	tokenNames := map[string]int{}
	for i, t := range c.API.Tokens {
		if t.Name == "" || (t.TokenFile == "") == (t.TokenEnv == "") {
			errs = append(errs, fmt.Errorf("api.tokens[%d]: name and one of tokenFile or tokenEnv are required", i))
		}
		// Audit events and dashboard sessions name a token by its name.
		if first, ok := tokenNames[t.Name]; ok && t.Name != "" {
			errs = append(errs, fmt.Errorf("api.tokens[%d].name: %q is api.tokens[%d]'s too: names must be unique", i, t.Name, first))
		}
		tokenNames[t.Name] = i
		switch t.Role {
		case "viewer", "operator", "admin":
		default:
			errs = append(errs, fmt.Errorf("api.tokens[%d].role: %q: want viewer, operator or admin", i, t.Role))
		}
	}
	errs = append(errs, c.TLS.validate("tls"), c.NATS.TLS.validate("nats.tls"))
	if c.NATS.URL != "" && (c.NATS.TLS.CertFile != "" || len(c.NATS.TLS.Hosts) > 0) {
		errs = append(errs, errors.New("nats.tls: is the embedded server's; an external server (nats.url) takes nats.caFile"))
	}
	if c.Webhook.SecretFile != "" && c.Webhook.SecretEnv != "" {
		errs = append(errs, errors.New("webhook: set secretFile or secretEnv, not both"))
	}
	return errors.Join(errs...)
}

func (c NATSCluster) validate(n NATS) error {
	if c.Listen == "" {
		if len(c.Routes) > 0 {
			return errors.New("nats.cluster.routes: need nats.cluster.listen")
		}
		return nil
	}
	var errs []error
	if n.URL != "" {
		errs = append(errs, errors.New("nats.cluster: clusters the embedded server; an external one (nats.url) is clustered by its own configuration"))
	}
	if n.TLS.InsecurePlaintext {
		errs = append(errs, errors.New("nats.cluster: routes are authenticated by mutual TLS, which nats.tls.insecurePlaintext turns off"))
	}
	if n.TLS.CertFile != "" && n.TLS.CAFile == "" {
		errs = append(errs, errors.New("nats.cluster: with nats.tls.certFile, nats.tls.caFile names the CA the replicas' certificates verify with"))
	}
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("nats.cluster.routes: name the replicas' route URLs"))
	}
	for i, r := range c.Routes {
		if u, err := url.Parse(r); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("nats.cluster.routes[%d]: %q is not a URL like tls://hub-0.hub:6222", i, r))
		}
	}
	return errors.Join(errs...)
}

func (t TLS) validate(field string) error {
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return fmt.Errorf("%s: set both certFile and keyFile, or neither", field)
	case t.InsecurePlaintext && (t.CertFile != "" || len(t.Hosts) > 0):
		return fmt.Errorf("%s: insecurePlaintext excludes a certificate", field)
	case t.CAFile != "" && t.CertFile == "":
		return fmt.Errorf("%s.caFile: needs certFile (the private CA is the hub's own)", field)
	}
	return nil
}

// NormalizeURL compares repository URLs the way Argo CD does: case and a
// trailing ".git" or "/" do not matter.
func NormalizeURL(u string) string {
	u = strings.ToLower(strings.TrimSpace(u))
	u = strings.TrimSuffix(u, "/")
	return strings.TrimSuffix(u, ".git")
}

// ClusterSelector parses the root's selector.
func (r Root) ClusterSelector() labels.Selector {
	sel, err := labels.Parse(r.Clusters)
	if err != nil {
		return labels.Nothing() // validate refused it already
	}
	return sel
}

// AuthMethod builds go-git credentials, reading secrets now.
func (a GitAuth) AuthMethod() (transport.AuthMethod, error) {
	if a.SSHKeyFile != "" {
		user := a.Username
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, a.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("ssh key %s: %w", a.SSHKeyFile, err)
		}
		if a.SSHKnownHostsFile != "" {
			if keys.HostKeyCallback, err = gitssh.NewKnownHostsCallback(a.SSHKnownHostsFile); err != nil {
				return nil, fmt.Errorf("ssh known hosts %s: %w", a.SSHKnownHostsFile, err)
			}
		}
		return keys, nil
	}
	password, err := readSecret(a.PasswordFile, a.PasswordEnv)
	if err != nil || password == "" {
		return nil, err
	}
	user := a.Username
	if user == "" {
		user = "git" // token auth: GitHub and GitLab accept any user name
	}
	return &githttp.BasicAuth{Username: user, Password: password}, nil
}

// Secret reads the webhook secret; "" means webhooks are refused.
func (w Webhook) Secret() (string, error) { return readSecret(w.SecretFile, w.SecretEnv) }

func readSecret(file, env string) (string, error) {
	switch {
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read secret: %w", err)
		}
		return strings.TrimSpace(string(data)), nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("secret environment variable %s is not set", env)
		}
		return v, nil
	}
	return "", nil
}

func (c Charts) validate() error {
	var errs []error
	if c.RefreshInterval.Duration < 0 {
		errs = append(errs, fmt.Errorf("charts.refreshInterval: %s must be positive", c.RefreshInterval.Duration))
	}
	names := map[string]bool{}
	for i, r := range c.Repositories {
		field := fmt.Sprintf("charts.repositories[%d]", i)
		scheme, _, hasScheme := strings.Cut(r.URL, "://")
		switch {
		case r.URL == "":
			errs = append(errs, fmt.Errorf("%s.url: is required", field))
		case hasScheme && scheme != "https" && scheme != "http" && scheme != "oci":
			errs = append(errs, fmt.Errorf("%s.url: %q: want an https://, http:// or oci:// URL", field, r.URL))
		case hasScheme && r.EnableOCI && scheme != "oci":
			errs = append(errs, fmt.Errorf("%s.enableOCI: %q is not a registry path (no scheme, or oci://)", field, r.URL))
		case !hasScheme && !r.EnableOCI:
			errs = append(errs, fmt.Errorf("%s.url: %q has no scheme: name a Helm repository https://..., or set enableOCI for a registry path", field, r.URL))
		case scheme == "http" && !r.InsecurePlainHTTP:
			errs = append(errs, fmt.Errorf("%s.url: %q is plain HTTP: set insecurePlainHTTP to allow it", field, r.URL))
		}
		if r.PasswordFile != "" && r.PasswordEnv != "" {
			errs = append(errs, fmt.Errorf("%s: set passwordFile or passwordEnv, not both", field))
		}
		if r.InsecurePlainHTTP && (r.Username != "" || r.PasswordFile != "" || r.PasswordEnv != "") {
			errs = append(errs, fmt.Errorf("%s: credentials are never sent over plain HTTP (insecurePlainHTTP)", field))
		}
		if r.Name != "" {
			if names[r.Name] {
				errs = append(errs, fmt.Errorf("%s.name: %q names two repositories", field, r.Name))
			}
			names[r.Name] = true
		}
	}
	return errors.Join(errs...)
}
