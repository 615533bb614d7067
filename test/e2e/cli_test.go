package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/internal/cli"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// flotilla runs the CLI in process and returns its output and exit code.
func flotilla(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code := flotillatest.RunCLI(t, &out, &out, args...)
	return out.String(), code
}

func TestCLIReadsTheFleet(t *testing.T) {
	e := startHub(t)
	e.Register(t, "prod-eu", map[string]string{"env": "production"})
	e.Register(t, "staging-1", map[string]string{"env": "staging"})
	e.waitDesired(t, "staging-1", "api-service", hasHistory(1))
	e.waitDesired(t, "prod-eu", "api-service", hasHistory(1))
	auth := []string{"--hub", e.APIURL, "--token", apiToken}

	t.Run("cluster list", func(t *testing.T) {
		out, code := flotilla(t, append([]string{"cluster", "list"}, auth...)...)
		if code != 0 || !strings.Contains(out, "prod-eu") || !strings.Contains(out, "env=staging") || !strings.Contains(out, "connected") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})

	t.Run("app list by selector", func(t *testing.T) {
		var out string
		testenv.Eventually(t, 10*time.Second, func() error {
			var code int
			out, code = flotilla(t, append([]string{"app", "list", "--selector", "env=production"}, auth...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
			if !strings.Contains(out, "ml-inference") {
				return errorString(out)
			}
			return nil
		})
		if strings.Contains(out, "staging-1") {
			t.Errorf("selector env=production listed staging:\n%s", out)
		}
		// No agent runs here: the CLI must not pretend the apps synced.
		if !strings.Contains(out, "Unknown") {
			t.Errorf("apps without a status must show Unknown:\n%s", out)
		}
	})

	t.Run("app get as json", func(t *testing.T) {
		out, code := flotilla(t, append([]string{"app", "get", "api-service", "-o", "json"}, auth...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, out)
		}
		var resp struct {
			Apps []struct {
				Cluster string `json:"cluster"`
				Desired struct {
					HistoryID string `json:"historyId"`
				} `json:"desired"`
			} `json:"apps"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if len(resp.Apps) != 2 || resp.Apps[0].Cluster != "prod-eu" || resp.Apps[1].Cluster != "staging-1" {
			t.Errorf("apps = %+v", resp.Apps)
		}
	})

	t.Run("errors are one line with a meaningful exit code", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"wrong token", []string{"cluster", "list", "--hub", e.APIURL, "--token", "guess"}, cli.ExitAuth, "not authenticated"},
			{"no token", []string{"cluster", "list", "--hub", e.APIURL, "--token", ""}, cli.ExitAuth, "no bearer token"},
			{"unknown app", append([]string{"app", "get", "nope"}, auth...), cli.ExitNotFound, `application "nope" is not published`},
			{"bad selector", append([]string{"app", "list", "--selector", "env in (("}, auth...), cli.ExitUsage, "selector"},
			{"hub down", []string{"cluster", "list", "--hub", "http://127.0.0.1:1", "--token", apiToken}, cli.ExitHubDown, "unreachable"},
			{"bad flag", []string{"cluster", "list", "--frobnicate"}, cli.ExitUsage, "unknown flag"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, code := flotilla(t, tc.args...)
				if code != tc.code || !strings.Contains(out, tc.want) {
					t.Fatalf("exit %d (want %d), output %q (want %q)", code, tc.code, out, tc.want)
				}
			})
		}
	})
}

type errorString string

func (e errorString) Error() string { return string(e) }
