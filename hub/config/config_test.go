package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse("hub.yaml", []byte(`
repositories:
  - url: https://github.com/your-org/gitops-config
roots:
  - repo: https://github.com/your-org/gitops-config.git
    path: apps
    clusters: env=production
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repositories[0].PollInterval.Duration != 10*time.Second || c.History != 64 || c.NATS.EmbeddedListen != "0.0.0.0:4222" || c.Roots[0].Revision != "HEAD" {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"unknown root repo":     {"roots:\n  - repo: https://x/y\n    path: apps\n", "roots[0].repo: \"https://x/y\" is not in repositories"},
		"bad selector":          {"repositories: [{url: u}]\nroots:\n  - {repo: u, path: a, clusters: 'env in (('}\n", "roots[0].clusters"},
		"bad duration":          {"repositories: [{url: u, pollInterval: often}]\n", `"often" is not a duration`},
		"unknown field":         {"repositorys: []\n", `unknown field "repositorys"`},
		"history too long":      {"history: 100\n", "history: 100 must be between 1 and 64"},
		"key and password":      {"repositories: [{url: u, auth: {sshKeyFile: k, passwordEnv: P}}]\n", "repositories[0].auth: set sshKeyFile or a password, not both"},
		"hosts without key":     {"repositories: [{url: u, auth: {sshKnownHostsFile: h}}]\n", "repositories[0].auth.sshKnownHostsFile: needs sshKeyFile"},
		"negative poll":         {"repositories: [{url: u, pollInterval: -5s}]\n", "repositories[0].pollInterval: -5s must be positive"},
		"negative gc":           {"gcInterval: -1h\n", "gcInterval: -1h0m0s must be positive"},
		"negative replicas":     {"nats: {replicas: -1}\n", "nats.replicas: -1 must be at least 1"},
		"events kept a minute":  {"nats: {limits: {eventsMaxAge: 1m}}\n", "nats.limits.eventsMaxAge: 1m0s is less than an hour"},
		"a tiny artifact store": {"nats: {limits: {artifactsMaxBytes: 10}}\n", "nats.limits: eventsMaxBytes and artifactsMaxBytes must be at least 1 MiB"},
		"two tokens of one name": {"api: {tokens: [{name: ops, role: viewer, tokenEnv: A}, {name: ops, role: operator, tokenEnv: B}]}\n",
			`api.tokens[1].name: "ops" is api.tokens[0]'s too`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("hub.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "hub.yaml: ") {
				t.Fatalf("error = %v, want it to name hub.yaml and contain %q", err, tc.want)
			}
		})
	}
}
