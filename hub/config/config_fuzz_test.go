package config

import (
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// docsExample is the commented example of docs/hub-config.md, the first
// YAML block there.
func docsExample(f *testing.F) []byte {
	f.Helper()
	doc, err := os.ReadFile("../../docs/hub-config.md")
	if err != nil {
		f.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		f.Fatal("docs/hub-config.md has no YAML block")
	}
	return []byte(block)
}

// FuzzParse reads arbitrary bytes as the hub's configuration file. Parse
// never panics, and a configuration it accepts is one the hub can start
// with: durations its tickers accept, replicas and a history JetStream
// accepts, roots in known repositories with selectors that parse, tokens
// with a role and one source.
func FuzzParse(f *testing.F) {
	f.Add(docsExample(f))
	for _, seed := range []string{
		"",
		"repositories:\n  - url: https://github.com/your-org/gitops-config\nroots:\n  - repo: https://github.com/your-org/gitops-config.git\n    path: apps\n    clusters: env=production\n",
		"repositories: [{url: u, pollInterval: 1m, auth: {sshKeyFile: k, sshKnownHostsFile: h}}]\nroots: [{repo: U/, path: a, revision: main, name: r}]\n",
		"history: 64\ngcInterval: 30m\nnats: {url: 'nats://n:4222', credentialsFile: c, replicas: 3}\n",
		"api:\n  tokens:\n    - {name: oncall, role: viewer, tokenFile: /t}\n    - {name: ci, role: operator, tokenEnv: CI_TOKEN}\n",
		"webhook: {secretEnv: S}\ncommitAuthor: {name: Bot, email: bot@example.com}\n",
		"repositories: [{url: u, pollInterval: -5s}]\n",
		"gcInterval: 0s\n",
		"nats: {replicas: -1}\n",
		"history: 100\n",
		"roots: [{repo: nowhere, path: a, clusters: 'env in (('}]\n",
		"repositorys: []\n",
		"- a list\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("hub.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "hub.yaml: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if c.History < 1 || c.History > 64 {
			t.Errorf("accepted history %d", c.History)
		}
		if c.NATS.Replicas < 1 {
			t.Errorf("accepted nats.replicas %d", c.NATS.Replicas)
		}
		if c.GCInterval.Duration <= 0 {
			t.Errorf("accepted gcInterval %s", c.GCInterval.Duration)
		}
		repos := map[string]bool{}
		for i, r := range c.Repositories {
			repos[NormalizeURL(r.URL)] = true
			if r.URL == "" || r.PollInterval.Duration <= 0 {
				t.Errorf("accepted repositories[%d] %+v", i, r)
			}
		}
		for i, r := range c.Roots {
			if !repos[NormalizeURL(r.Repo)] || r.Path == "" || r.Name == "" || r.Revision == "" {
				t.Errorf("accepted roots[%d] %+v", i, r)
			}
			if _, err := labels.Parse(r.Clusters); err != nil {
				t.Errorf("accepted roots[%d].clusters %q: %v", i, r.Clusters, err)
			}
		}
		for i, tok := range c.API.Tokens {
			if tok.Name == "" || (tok.TokenFile == "") == (tok.TokenEnv == "") {
				t.Errorf("accepted api.tokens[%d] %+v", i, tok)
			}
			switch tok.Role {
			case "viewer", "operator", "admin":
			default:
				t.Errorf("accepted api.tokens[%d].role %q", i, tok.Role)
			}
		}
	})
}
