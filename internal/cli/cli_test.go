package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/api/apitest"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the commands print")

func TestMain(m *testing.M) {
	time.Local = time.UTC // the events table prints local times
	os.Exit(m.Run())
}

// result is what one run of the CLI did.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) code() int { return ExitCode(r.err) }

// String is the run as its golden file holds it.
func (r result) String() string {
	var b strings.Builder
	b.WriteString(r.stdout)
	if r.stderr != "" {
		b.WriteString("--- stderr\n" + r.stderr)
	}
	fmt.Fprintf(&b, "--- exit %d", r.code())
	if r.err != nil {
		b.WriteString(": " + r.err.Error())
	}
	return b.String() + "\n"
}

// isolate keeps the CLI from reading the environment or config file of
// whoever runs the tests.
func isolate(t *testing.T) {
	t.Helper()
	for _, v := range []string{"FLOTILLA_HUB", "FLOTILLA_TOKEN", "FLOTILLA_CONFIG"} {
		t.Setenv(v, "")
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
}

// stopClock stops the CLI's clock at at for the test.
func stopClock(t *testing.T, at time.Time) {
	t.Helper()
	now = func() time.Time { return at }
	t.Cleanup(func() { now = time.Now })
}

// flotilla runs the CLI in process with args.
func flotilla(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := NewRoot(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// fleetRun is a command run against the apitest fleet as one of its users.
type fleetRun struct {
	name  string
	token string // "": the viewer's
	args  []string
	fleet func(*apitest.Hub) // changes to the fleet before the run
	want  int                // exit code
}

// TestCommands runs each command against the hub's real API over the
// apitest fleet and compares all it printed, and its exit, with
// testdata/NAME.golden (go test ./internal/cli -update rewrites them).
func TestCommands(t *testing.T) {
	agentDown := func(h *apitest.Hub) { h.AgentErrors = map[string]string{"staging-1": "no agent answered in 30s"} }
	runs := []fleetRun{
		{name: "version", args: []string{"version"}},

		{name: "cluster-list", args: []string{"cluster", "list"}},
		{name: "cluster-list-wide", args: []string{"cluster", "list", "-o", "wide"}},
		{name: "cluster-list-json", args: []string{"cluster", "list", "-o", "json"}},
		{name: "cluster-list-yaml", args: []string{"cluster", "list", "-o", "yaml"}},
		{name: "cluster-list-xml", args: []string{"cluster", "list", "-o", "xml"}, want: ExitFailure},

		{name: "app-list", args: []string{"app", "list"}},
		{name: "app-list-wide", args: []string{"app", "list", "-o", "wide"}},
		{name: "app-list-cluster", args: []string{"app", "list", "--cluster", "staging-1"}},
		{name: "app-list-selector", args: []string{"app", "list", "--selector", "env=production"}},
		{name: "app-list-bad-selector", args: []string{"app", "list", "--selector", "env in (("}, want: ExitUsage},
		{name: "app-list-statuses-unreadable", args: []string{"app", "list"}, want: ExitHubDown,
			fleet: func(h *apitest.Hub) { h.Errors = map[string]error{"Statuses": errors.New("nats: timeout")} }},
		{name: "app-get", args: []string{"app", "get", "api-service"}},
		{name: "app-get-json", args: []string{"app", "get", "worker-service", "-o", "json"}},
		{name: "app-get-unknown", args: []string{"app", "get", "nope"}, want: ExitNotFound},
		{name: "app-get-no-app", args: []string{"app", "get"}, want: ExitUsage},
		{name: "cluster-list-extra-arg", args: []string{"cluster", "list", "prod-eu"}, want: ExitUsage},
		{name: "unknown-flag", args: []string{"app", "list", "--frobnicate"}, want: ExitUsage},

		{name: "app-history", args: []string{"app", "history", "api-service"}},
		{name: "app-history-wide", args: []string{"app", "history", "api-service", "--cluster", "prod-eu", "-o", "wide"}},
		{name: "app-history-unknown-cluster", args: []string{"app", "history", "worker-service", "--cluster", "staging-1"}, want: ExitNotFound},

		{name: "app-diff-differs", args: []string{"app", "diff", "api-service"}, want: ExitDiffers},
		{name: "app-diff-in-sync", args: []string{"app", "diff", "worker-service"}},
		{name: "app-diff-agent-down", args: []string{"app", "diff", "api-service"}, fleet: agentDown, want: ExitFailure},

		{name: "fleet-status", args: []string{"fleet", "status", "api-service"}},
		{name: "fleet-status-wide", args: []string{"fleet", "status", "api-service", "-o", "wide"}},
		{name: "fleet-status-wait", args: []string{"fleet", "status", "api-service", "--wait"}},
		{name: "fleet-status-unknown", args: []string{"fleet", "status", "nope"}, want: ExitNotFound},
		{name: "fleet-promote-viewer", args: []string{"fleet", "promote", "api-service"}, want: ExitAuth},

		{name: "events", args: []string{"events"}},
		{name: "events-app-limit", args: []string{"events", "--app", "api-service", "--limit", "1"}},
		{name: "events-yaml", args: []string{"events", "--cluster", "staging-1", "-o", "yaml"}},

		{name: "app-sync", token: apitest.OperatorToken, args: []string{"app", "sync", "api-service"}},
		{name: "app-sync-wait", token: apitest.OperatorToken, args: []string{"app", "sync", "api-service", "--cluster", "prod-eu", "--wait"}},
		{name: "app-sync-wait-failed", token: apitest.OperatorToken, args: []string{"app", "sync", "api-service", "--cluster", "prod-eu", "--wait"},
			fleet: func(h *apitest.Hub) {
				h.Status[0].Phase, h.Status[0].Message = flotillav1.SyncPhase_SYNC_PHASE_FAILED, "Deployment api/api-service: admission webhook denied it"
			}, want: ExitFailure},
		{name: "app-rollback-wait-timeout", token: apitest.OperatorToken, want: ExitFailure,
			args: []string{"app", "rollback", "api-service", "--revision", "5", "--cluster", "prod-eu", "--wait", "--wait-timeout", "1s"}},
		{name: "app-sync-agent-down", token: apitest.OperatorToken, args: []string{"app", "sync", "api-service"}, fleet: agentDown, want: ExitFailure},
		{name: "app-sync-json", token: apitest.OperatorToken, args: []string{"app", "sync", "api-service", "-o", "json"}},
		{name: "app-sync-viewer", args: []string{"app", "sync", "api-service"}, want: ExitAuth},
		{name: "app-sync-wrong-token", token: "guessed", args: []string{"app", "sync", "api-service"}, want: ExitAuth},

		{name: "app-rollback", token: apitest.OperatorToken, args: []string{"app", "rollback", "api-service", "--revision", "5", "--cluster", "prod-eu"}},
		{name: "app-rollback-not-retained", token: apitest.OperatorToken, args: []string{"app", "rollback", "api-service", "--revision", "5"}, want: ExitNotFound},
		{name: "app-rollback-git", token: apitest.OperatorToken, args: []string{"app", "rollback", "api-service", "--git"}},
		// --wait follows only the clusters the revert changed: staging-1 has
		// not reported history 4, so the wait runs out on it alone.
		{name: "app-rollback-git-wait", token: apitest.OperatorToken, args: []string{"app", "rollback", "api-service", "--git", "--wait", "--wait-timeout", "1s"}, want: ExitFailure},
		{name: "app-rollback-nothing-to-revert", token: apitest.OperatorToken, args: []string{"app", "rollback", "api-service", "--git"},
			fleet: func(h *apitest.Hub) { h.Reverted = nil }, want: ExitFailure},
		{name: "app-rollback-neither", token: apitest.OperatorToken, args: []string{"app", "rollback", "api-service"}, want: ExitUsage},
		{name: "app-rollback-both", token: apitest.OperatorToken, args: []string{"app", "rollback", "api-service", "--git", "--revision", "5"}, want: ExitUsage},
		{name: "app-rollback-git-cluster", token: apitest.OperatorToken, args: []string{"app", "rollback", "api-service", "--git", "--cluster", "prod-eu"}, want: ExitUsage},
		{name: "app-rollback-viewer", args: []string{"app", "rollback", "api-service", "--revision", "5"}, want: ExitAuth},

		{name: "cluster-add", token: apitest.AdminToken, args: []string{"cluster", "add", "prod-us", "--labels", "env=production,region=us"}},
		{name: "cluster-add-bad-labels", token: apitest.AdminToken, args: []string{"cluster", "add", "prod-us", "--labels", "env"}, want: ExitUsage},
		{name: "cluster-add-operator", token: apitest.OperatorToken, args: []string{"cluster", "add", "prod-us"}, want: ExitAuth},
		{name: "cluster-label", token: apitest.AdminToken, args: []string{"cluster", "label", "prod-eu", "--labels", "env=staging"}},
		{name: "cluster-revoke", token: apitest.AdminToken, args: []string{"cluster", "revoke", "prod-eu"}},
		{name: "cluster-revoke-unknown", token: apitest.AdminToken, args: []string{"cluster", "revoke", "nope"}, want: ExitNotFound},
		{name: "cluster-list-revoked", args: []string{"cluster", "list"},
			fleet: func(h *apitest.Hub) {
				h.Revoked = map[string]time.Time{"staging-1": h.Registrations[0].GetHeartbeatAt().AsTime()}
			}},

		{name: "app-unpin", token: apitest.OperatorToken, args: []string{"app", "unpin", "api-service"}},
		{name: "app-unpin-not-pinned", token: apitest.OperatorToken, args: []string{"app", "unpin", "worker-service"}, want: ExitFailure},

		{name: "rollout-promote-full", token: apitest.OperatorToken, args: []string{"rollout", "promote", "api-service", "--cluster", "prod-eu", "--full"}},
		{name: "rollout-pause-agent-down", token: apitest.OperatorToken, args: []string{"rollout", "pause", "api-service"}, fleet: agentDown, want: ExitFailure},
		{name: "rollout-pause-agent-down-json", token: apitest.OperatorToken, args: []string{"rollout", "pause", "api-service", "-o", "json"}, fleet: agentDown, want: ExitFailure},
		{name: "rollout-abort-full", token: apitest.OperatorToken, args: []string{"rollout", "abort", "api-service", "--full"}, want: ExitUsage},
		{name: "rollout-retry-viewer", args: []string{"rollout", "retry", "api-service"}, want: ExitAuth},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			isolate(t)
			at := time.Now().Truncate(time.Second)
			stopClock(t, at)
			hub := apitest.Fleet(at)
			if r.fleet != nil {
				r.fleet(hub)
			}
			token := r.token
			if token == "" {
				token = apitest.ViewerToken
			}
			url := apitest.Serve(t, hub)
			got := flotilla(t, append(r.args, "--hub", url, "--token", token)...)
			if got.code() != r.want {
				t.Errorf("exit %d, want %d", got.code(), r.want)
			}
			checkGolden(t, r.name, canonical(t, got.String(), at, url))
		})
	}
}

var timestamp = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`)

// canonical makes out the same from run to run: it re-indents a JSON
// answer (protojson varies its spacing on purpose), writes the times the
// fleet has relative to now ("now-5s") and the local one of now as
// "<now>", and the hub's address as $HUB.
func canonical(t *testing.T, out string, now time.Time, hub string) string {
	t.Helper()
	if end := strings.Index(out, "\n}\n"); strings.HasPrefix(out, "{") && end >= 0 {
		var b bytes.Buffer
		if err := json.Indent(&b, compact(t, out[:end+2]), "", "  "); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		out = b.String() + out[end+2:]
	}
	out = timestamp.ReplaceAllStringFunc(out, func(quoted string) string {
		at, err := time.Parse(time.RFC3339Nano, strings.Trim(quoted, `"`))
		if err != nil || now.Sub(at).Abs() > 48*time.Hour {
			return quoted // a fixed time, not one relative to now
		}
		return `"now-` + now.Sub(at).String() + `"`
	})
	out = strings.ReplaceAll(out, now.Format("15:04:05"), "<now>")
	return strings.ReplaceAll(out, hub, "$HUB")
}

func compact(t *testing.T, doc string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(doc)); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, doc)
	}
	return b.Bytes()
}

// checkGolden compares got with testdata/name.golden, or writes it there
// with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/cli -run TestCommands -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestCommandsAskTheHubWhatTheySay(t *testing.T) {
	tests := []struct {
		args []string
		want apitest.Call
	}{
		{[]string{"app", "history", "api-service", "--cluster", "prod-eu"}, apitest.Call{Method: "History", App: "api-service", Cluster: "prod-eu"}},
		{[]string{"app", "diff", "worker-service", "--cluster", "prod-eu"}, apitest.Call{Method: "Diff", App: "worker-service", Cluster: "prod-eu", Actor: "otto"}},
		{[]string{"events"}, apitest.Call{Method: "Events", Cluster: "*", App: "*", Limit: 50}},
		{[]string{"events", "--cluster", "prod-eu", "--app", "api-service", "--limit", "7"}, apitest.Call{Method: "Events", Cluster: "prod-eu", App: "api-service", Limit: 7}},
		{[]string{"app", "sync", "api-service", "--cluster", "prod-eu"}, apitest.Call{Method: "Sync", App: "api-service", Cluster: "prod-eu", Actor: "otto"}},
		{[]string{"app", "rollback", "api-service", "--revision", "5", "--cluster", "prod-eu"}, apitest.Call{Method: "Rollback", App: "api-service", Cluster: "prod-eu", HistoryID: 5, Actor: "otto"}},
		{[]string{"app", "rollback", "api-service", "--git"}, apitest.Call{Method: "Revert", App: "api-service", Actor: "otto"}},
		{[]string{"app", "unpin", "api-service", "--cluster", "prod-eu"}, apitest.Call{Method: "Unpin", App: "api-service", Cluster: "prod-eu", Actor: "otto"}},
		{[]string{"rollout", "promote", "api-service"}, apitest.Call{Method: "Rollout", App: "api-service", Actor: "otto", Action: 1}},
		{[]string{"rollout", "promote", "api-service", "--full"}, apitest.Call{Method: "Rollout", App: "api-service", Actor: "otto", Action: 1, Full: true}},
		{[]string{"rollout", "abort", "api-service", "--cluster", "prod-eu"}, apitest.Call{Method: "Rollout", App: "api-service", Cluster: "prod-eu", Actor: "otto", Action: 2}},
		{[]string{"rollout", "retry", "api-service"}, apitest.Call{Method: "Rollout", App: "api-service", Actor: "otto", Action: 3}},
		{[]string{"rollout", "pause", "api-service"}, apitest.Call{Method: "Rollout", App: "api-service", Actor: "otto", Action: 4}},
		{[]string{"fleet", "status", "api-service"}, apitest.Call{Method: "FleetRollout", App: "api-service"}},
		{[]string{"fleet", "promote", "api-service"}, apitest.Call{Method: "PromoteFleetRollout", App: "api-service", Actor: "otto"}},
		{[]string{"fleet", "promote", "api-service", "--wave", "1"}, apitest.Call{Method: "PromoteFleetRollout", App: "api-service", Actor: "otto", Wave: ptr(int32(1))}},
		{[]string{"fleet", "promote", "api-service", "--wave", "0"}, apitest.Call{Method: "PromoteFleetRollout", App: "api-service", Actor: "otto", Wave: ptr(int32(0))}},
		{[]string{"fleet", "abort", "api-service", "--rollback"}, apitest.Call{Method: "AbortFleetRollout", App: "api-service", Actor: "otto", Rollback: true}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			isolate(t)
			hub := apitest.Fleet(time.Now())
			got := flotilla(t, append(tc.args, "--hub", apitest.Serve(t, hub), "--token", apitest.OperatorToken)...)
			if got.err != nil {
				t.Fatalf("%v\n%s", got.err, got.stdout)
			}
			if diff := cmp.Diff([]apitest.Call{tc.want}, hub.Calls()); diff != "" {
				t.Errorf("calls to the hub (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHubAndTokenResolution(t *testing.T) {
	hub := apitest.Fleet(time.Now())
	url := apitest.Serve(t, hub)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tokenFile := write("token", apitest.OperatorToken+"\n")
	xdg := filepath.Join(dir, "xdg")
	if err := os.MkdirAll(filepath.Join(xdg, "flotilla"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join("xdg", "flotilla", "config.yaml"), "hub: "+url+"\ntoken: "+apitest.ViewerToken+"\n")
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    int
		wantErr string // a regexp
	}{{
		name: "flags",
		args: []string{"--hub", url, "--token", apitest.ViewerToken},
	}, {
		name: "environment",
		env:  map[string]string{"FLOTILLA_HUB": url + "/", "FLOTILLA_TOKEN": apitest.ViewerToken},
	}, {
		name: "flags before environment",
		env:  map[string]string{"FLOTILLA_HUB": "http://127.0.0.1:1", "FLOTILLA_TOKEN": "guessed"},
		args: []string{"--hub", url, "--token", apitest.ViewerToken},
	}, {
		name: "config file with a token file",
		env:  map[string]string{"FLOTILLA_CONFIG": write("config.yaml", "hub: "+url+"\ntokenFile: "+tokenFile+"\n")},
	}, {
		name: "config file with a token",
		args: []string{"--config", write("inline.yaml", "hub: "+url+"\ntoken: "+apitest.ViewerToken+"\n")},
	}, {
		name: "environment before config file",
		env: map[string]string{"FLOTILLA_TOKEN": apitest.ViewerToken,
			"FLOTILLA_CONFIG": write("wrong-token.yaml", "hub: "+url+"\ntoken: guessed\n")},
	}, {
		name: "the default config file",
		env:  map[string]string{"XDG_CONFIG_HOME": xdg},
	}, {
		name:    "a config file that is not there",
		args:    []string{"--config", filepath.Join(dir, "missing.yaml")},
		want:    ExitUsage,
		wantErr: `^config: open .*missing\.yaml: no such file or directory$`,
	}, {
		name:    "a config file with a misspelt field",
		args:    []string{"--config", write("typo.yaml", "hub: "+url+"\ntokenFiel: "+tokenFile+"\n")},
		want:    ExitUsage,
		wantErr: `^config .*typo\.yaml: error unmarshaling JSON: .*unknown field "tokenFiel"$`,
	}, {
		name:    "a token file that is not there",
		args:    []string{"--config", write("no-token.yaml", "hub: "+url+"\ntokenFile: "+filepath.Join(dir, "gone")+"\n")},
		want:    ExitUsage,
		wantErr: `^config .*no-token\.yaml: tokenFile: open .*gone: no such file or directory$`,
	}, {
		name:    "no token at all",
		args:    []string{"--hub", url},
		want:    ExitAuth,
		wantErr: `^not authenticated: no bearer token: pass --token or set FLOTILLA_TOKEN$`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got := flotilla(t, append([]string{"cluster", "list"}, tc.args...)...)
			if got.code() != tc.want {
				t.Fatalf("exit %d, want %d: %v", got.code(), tc.want, got.err)
			}
			if tc.wantErr == "" {
				if !strings.Contains(got.stdout, "prod-eu") {
					t.Errorf("cluster list printed:\n%s", got.stdout)
				}
				return
			}
			if !regexp.MustCompile(tc.wantErr).MatchString(got.err.Error()) {
				t.Errorf("error %q, want it to match %q", got.err, tc.wantErr)
			}
		})
	}
}

func TestUnreachableHub(t *testing.T) {
	isolate(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	got := flotilla(t, "app", "list", "--hub", addr, "--token", apitest.ViewerToken)
	if got.code() != ExitHubDown || !strings.HasPrefix(got.err.Error(), "hub "+addr+" is unreachable: ") {
		t.Errorf("exit %d: %v; want %d and the hub named", got.code(), got.err, ExitHubDown)
	}
}

// TestEveryRoleRefusal checks that a viewer is refused every command that
// changes the fleet, with the exit code for auth failures, and allowed
// the others.
func TestEveryRoleRefusal(t *testing.T) {
	tests := []struct {
		args      []string
		procedure string // the one a viewer may not call; "": allowed
	}{
		{[]string{"cluster", "list"}, ""},
		{[]string{"app", "list"}, ""},
		{[]string{"app", "get", "api-service"}, ""},
		{[]string{"app", "history", "api-service"}, ""},
		{[]string{"app", "diff", "worker-service"}, ""},
		{[]string{"events"}, ""},
		{[]string{"app", "sync", "api-service"}, "SyncApp"},
		{[]string{"app", "rollback", "api-service", "--revision", "5"}, "RollbackApp"},
		{[]string{"app", "rollback", "api-service", "--git"}, "RevertApp"},
		{[]string{"app", "unpin", "api-service"}, "UnpinApp"},
		{[]string{"rollout", "promote", "api-service"}, "RolloutApp"},
		{[]string{"rollout", "abort", "api-service"}, "RolloutApp"},
		{[]string{"rollout", "retry", "api-service"}, "RolloutApp"},
		{[]string{"rollout", "pause", "api-service"}, "RolloutApp"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			isolate(t)
			hub := apitest.Fleet(time.Now())
			got := flotilla(t, append(tc.args, "--hub", apitest.Serve(t, hub), "--token", apitest.ViewerToken)...)
			if tc.procedure == "" {
				if got.err != nil {
					t.Fatalf("a viewer was refused: %v", got.err)
				}
				return
			}
			want := fmt.Sprintf("not allowed: token %q may not call /flotilla.v1.HubService/%s", "vera", tc.procedure)
			if got.code() != ExitAuth || got.err.Error() != want {
				t.Errorf("exit %d: %v; want %d: %s", got.code(), got.err, ExitAuth, want)
			}
			if len(hub.Calls()) > 0 {
				t.Errorf("a refused command reached the hub: %v", hub.Calls())
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("anything"), ExitFailure},
		{&ExitError{Code: ExitDiffers, Err: errors.New("differences in prod-eu")}, ExitDiffers},
		{fmt.Errorf("wrapped: %w", &ExitError{Code: ExitNotFound, Err: api.ErrNotFound}), ExitNotFound},
	}
	for _, tc := range tests {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
