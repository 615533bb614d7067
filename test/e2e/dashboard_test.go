package e2e

import (
	"context"
	"crypto/x509"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

//go:embed testdata/axe-core/axe.min.js
var axeSource string

// TestDashboard drives the hub's dashboard in Debian's Chromium against a
// real hub, two real clusters and their agents: the stories of issue 19,
// each page checked by axe-core and saved as a screenshot under the
// test's artifacts (go test -artifacts; docs/dashboard.md shows them).
func TestDashboard(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu", Workloads: true})
	staging := testenv.StartCluster(t, testenv.ClusterOptions{Name: "staging-1"})
	startAgent(t, e, prod, map[string]string{"env": "production"}, t.TempDir())
	startAgent(t, e, staging, map[string]string{"env": "staging"}, t.TempDir())
	waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.4.2")

	d := &dashboard{b: testenv.StartBrowser(t, hubCertificate(t, e)), url: e.APIURL, shots: t.ArtifactDir()}
	step := newSteps(t)

	step.run("a wrong token is refused", func(t *testing.T) {
		d.open(t, "/")
		d.waitVisible(t, "#signin")
		d.check(t, "sign-in")
		d.run(t, chromedp.SendKeys(chromedp.CSS("#token"), "guessed"), chromedp.KeyEvent(kb.Enter))
		d.waitText(t, "#signin-error", "token not accepted")
		d.check(t, "sign-in-refused")
	})

	step.run("an operator signs in with the keyboard alone", func(t *testing.T) {
		d.open(t, "/")
		d.waitVisible(t, "#signin")
		d.tabTo(t, "token")
		d.run(t, chromedp.KeyEvent(operatorToken), chromedp.KeyEvent(kb.Enter))
		d.waitText(t, "#whoami", "oncall (operator)")
	})

	step.run("the fleet matrix shows the fixture's apps in both clusters", func(t *testing.T) {
		d.open(t, "/#/")
		for _, cell := range []string{"prod-eu/api-service", "prod-eu/worker-service", "staging-1/api-service", "staging-1/worker-service"} {
			cluster, app, _ := strings.Cut(cell, "/")
			d.waitAttr(t, fmt.Sprintf(`#fleet-matrix td[data-cluster=%q][data-app=%q]`, cluster, app), "data-sync", "Synced")
		}
		d.waitText(t, "#connection", "Live")
		d.check(t, "fleet")
		d.open(t, "/#/clusters")
		d.waitText(t, `#clusters tr[data-cluster="prod-eu"]`, "Connected")
		d.waitText(t, `#clusters tr[data-cluster="prod-eu"]`, "env=production")
		d.check(t, "clusters")
	})

	step.run("a commit's progress appears live", func(t *testing.T) {
		d.open(t, "/#/")
		cell := `#fleet-matrix td[data-cluster="prod-eu"][data-app="api-service"]`
		d.waitText(t, cell, "#1")
		eval[bool](t, d, `window.__loadedOnce = true`)
		values := readFixture(t, "environments/production/api-service-values.yaml")
		e.Commit(t, "deploy: api-service 1.5.0", map[string]string{
			"environments/production/api-service-values.yaml": strings.Replace(values, `tag: "1.4.2"`, `tag: "1.5.0"`, 1),
		})
		e.Webhook(t, webhookSecret)
		d.waitText(t, cell, "#2")
		waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.5.0")
		d.waitAttr(t, cell, "data-sync", "Synced")
		if !eval[bool](t, d, `window.__loadedOnce === true`) {
			t.Fatal("the page reloaded: the change must come through the stream")
		}
		d.check(t, "fleet-after-commit")
	})

	step.run("an operator rolls back production from the history table", func(t *testing.T) {
		d.open(t, "/#/apps/api-service")
		rollback := `#history button[data-action="rollback"][data-cluster="prod-eu"][data-history-id="1"]`
		d.waitVisible(t, rollback)
		d.check(t, "application")
		d.run(t, chromedp.Click(chromedp.CSS(rollback)))
		d.waitVisible(t, "#confirm[open]")
		d.check(t, "rollback-confirm")
		d.run(t, chromedp.Click(chromedp.CSS("#confirm-ok")))
		d.waitText(t, "#outcome", "prod-eu")
		waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.4.2")
		d.waitText(t, `section[data-cluster="prod-eu"]`, "pinned to 1")
		d.check(t, "application-rolled-back")
	})

	step.run("anyone may ask a cluster's agent for its diff", func(t *testing.T) {
		d.open(t, "/#/apps/api-service")
		diff := `button[data-action="diff"][data-cluster="prod-eu"]`
		d.waitVisible(t, diff)
		d.run(t, chromedp.Click(chromedp.CSS(diff)))
		d.waitText(t, `section[data-cluster="prod-eu"] .diff-status`, "history 3")
	})

	step.run("an operator unpins production, and Git's version comes back", func(t *testing.T) {
		unpin := `button[data-action="unpin"][data-cluster="prod-eu"]`
		d.waitVisible(t, unpin)
		d.run(t, chromedp.Click(chromedp.CSS(unpin)))
		d.waitVisible(t, "#confirm[open]")
		d.run(t, chromedp.Click(chromedp.CSS("#confirm-ok")))
		d.waitText(t, "#outcome", "prod-eu")
		waitImage(t, prod, rolloutsGVR, "production", "api-service", "api-service:1.5.0")
		d.waitFor(t, "prod-eu's pin gone", `document.querySelector('section[data-cluster="prod-eu"]')?.textContent ?? ""`,
			func(text string) bool { return text != "" && !strings.Contains(text, "pinned to") })
		d.check(t, "application-unpinned")
	})

	step.run("the page works with the hub restarted under it", func(t *testing.T) {
		d.open(t, "/#/")
		d.waitText(t, "#connection", "Live")
		// Record each connection state the page shows from now on.
		eval[bool](t, d, `window.__states = [];
			new MutationObserver(() => window.__states.push(document.body.dataset.connection))
				.observe(document.body, {attributes: true, attributeFilter: ["data-connection"]}); true`)
		e.Restart(t)
		d.waitAttr(t, "body", "data-connection", "live")
		states := eval[[]string](t, d, `window.__states`)
		if !strings.Contains(strings.Join(states, " "), "lost") {
			t.Fatalf("connection states %v: the page never said it lost the hub", states)
		}
		// Live again: the new hub accepted the old hub's session cookie
		// for the stream, as it does for calls.
		d.waitAttr(t, `#fleet-matrix td[data-cluster="prod-eu"][data-app="api-service"]`, "data-sync", "Synced")
		d.check(t, "fleet-after-restart")
	})

	step.run("the events show the rollback and who made it, filtered by actor", func(t *testing.T) {
		d.open(t, "/#/events")
		d.waitText(t, "#events", "RollbackApp")
		d.run(t, chromedp.SendKeys(chromedp.CSS("#events-actor"), "oncall"))
		d.waitFor(t, "only oncall's events", `[...document.querySelectorAll("#events tbody tr")].map(r => r.textContent).join("\n")`,
			func(rows string) bool {
				return strings.Contains(rows, "RollbackApp") && strings.Contains(rows, "UnpinApp") && !strings.Contains(rows, "agent/")
			})
		d.check(t, "events")
	})

	step.run("a viewer sees no action, and the API refuses one anyway", func(t *testing.T) {
		d.run(t, chromedp.Click(`//button[normalize-space()="Sign out"]`))
		d.waitVisible(t, "#signin")
		d.run(t, chromedp.SendKeys(chromedp.CSS("#token"), apiToken), chromedp.KeyEvent(kb.Enter))
		d.waitText(t, "#whoami", "ops (viewer)")
		d.open(t, "/#/apps/api-service")
		d.waitVisible(t, `#history`)
		d.waitVisible(t, `section[data-cluster="prod-eu"] table.resources`)
		actions := eval[[]string](t, d, `[...document.querySelectorAll("main button")].map(b => b.textContent.trim())
			.filter(text => !["Show diff", "Previous", "Next"].includes(text))`)
		if len(actions) > 0 {
			t.Errorf("a viewer's page shows the actions %q", actions)
		}
		refused := eval[string](t, d, `fetch("/flotilla.v1.HubService/SyncApp", {method: "POST",
			headers: {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}, body: '{"app":"api-service"}'})
			.then(r => r.json()).then(j => j.code)`, chromedp.EvalAwaitPromise)
		if refused != "permission_denied" {
			t.Errorf("a viewer's SyncApp from the page: %q, want permission_denied", refused)
		}
		d.check(t, "application-viewer")
	})

	if errs := d.b.Errors(t); len(errs) > 0 {
		t.Errorf("the pages reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

// hubCertificate is the certificate the hub serves its API with.
func hubCertificate(t *testing.T, e *hubEnv) *x509.Certificate {
	t.Helper()
	resp, err := e.HTTP.Get(e.APIURL + "/healthz")
	must(t, err)
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0]
}

// dashboard drives the dashboard's pages in one browser tab.
type dashboard struct {
	b     *testenv.Browser
	url   string
	shots string
}

// pageTimeout bounds each wait for the page: the hub, the agents and
// the clusters do the work, and a stream carries it to the page.
const pageTimeout = 90 * time.Second

func (d *dashboard) run(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(d.b.Ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eval is the value of the JavaScript expression in the page.
func eval[T any](t *testing.T, d *dashboard, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(d.b.Ctx, pageTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("browser: %s: %v", expr, err)
	}
	return v
}

// clickLink clicks the element sel matches in one evaluation in the page.
// In a part of the page that live updates render again, chromedp's Click
// can find the node and then lose it to a render before it clicks it
// ("Could not find node with given id").
func (d *dashboard) clickLink(t *testing.T, sel string) {
	t.Helper()
	d.waitVisible(t, sel)
	js := `(() => { const e = document.querySelector(` + strconv.Quote(sel) + `); if (!e) return false; e.click(); return true })()`
	if !eval[bool](t, d, js) {
		t.Fatalf("%s: gone before it was clicked", sel)
	}
}

// open loads the dashboard's path (a route after "#").
func (d *dashboard) open(t *testing.T, path string) {
	t.Helper()
	d.run(t, chromedp.Navigate(d.url+path))
}

func (d *dashboard) waitVisible(t *testing.T, sel string) {
	t.Helper()
	d.run(t, chromedp.WaitVisible(chromedp.CSS(sel)))
}

// waitText waits until the first element sel matches has text with want.
func (d *dashboard) waitText(t *testing.T, sel, want string) {
	t.Helper()
	d.waitFor(t, fmt.Sprintf("%s has text %q", sel, want), fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? "")`, sel),
		func(got string) bool { return strings.Contains(got, want) })
}

// waitAttr waits until the first element sel matches has attribute name
// with the value want.
func (d *dashboard) waitAttr(t *testing.T, sel, name, want string) {
	t.Helper()
	d.waitFor(t, fmt.Sprintf("%s[%s=%q]", sel, name, want), fmt.Sprintf(`(document.querySelector(%q)?.getAttribute(%q) ?? "")`, sel, name),
		func(got string) bool { return got == want })
}

// waitFor evaluates expr (a string) in the page until ok says so.
func (d *dashboard) waitFor(t *testing.T, what, expr string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(pageTimeout)
	for {
		got := eval[string](t, d, expr)
		if ok(got) {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(d.b.Ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("waited %s for %s; it is %q; the page says:\n%s", pageTimeout, what, got, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tabTo presses Tab until the element with id has the focus.
func (d *dashboard) tabTo(t *testing.T, id string) {
	t.Helper()
	for range 20 {
		d.run(t, chromedp.KeyEvent(kb.Tab))
		if eval[string](t, d, `document.activeElement?.id ?? ""`) == id {
			return
		}
	}
	t.Fatalf("20 presses of Tab never reached #%s", id)
}

// check runs axe-core's WCAG 2.1 A and AA rules on the page as it is, and
// saves a screenshot as name.png.
func (d *dashboard) check(t *testing.T, name string) {
	t.Helper()
	png, err := chromedp.Run(d.b.Ctx, chromedp.FullScreenshot(100))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(d.shots, name+".png"), png, 0o644))
	if !eval[bool](t, d, `!!window.axe`) { // DevTools evaluates it: the page's policy forbids eval
		eval[bool](t, d, axeSource+"\n;true")
	}
	violations := eval[[]string](t, d, `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
			.then(r => r.violations.map(v => v.id + ": " + v.help + " at " + v.nodes.map(n => n.target.join(" ")).join(", ")))`,
		chromedp.EvalAwaitPromise)
	if len(violations) > 0 {
		t.Errorf("%s: accessibility violations:\n%s", name, strings.Join(violations, "\n"))
	}
}

// canaryWithPauses are the user story's steps with a pause an operator
// ends before the analysis and one after it.
const canaryWithPauses = `    - setWeight: 10
    - pause: {}
    - analysis:
        templates:
          - templateName: error-rate-check
    - setWeight: 50
    - pause: {}
    - setWeight: 100`

// TestDashboardShowsACanaryAnalysis: the user story's canary, its
// analysis against a real Prometheus, seen and driven from an
// application's page: an operator promotes it past its pause with the
// Rollout's button, the analysis's measurements appear plotted with
// their success condition, and the steps and ReplicaSets follow.
func TestDashboardShowsACanaryAnalysis(t *testing.T) {
	e := startHub(t)
	prod := testenv.StartCluster(t, testenv.ClusterOptions{Name: "prod-eu", Workloads: true})
	traffic := testenv.StartTraffic(t)
	traffic.Serve("api-service", "canary", 0.002)
	traffic.Serve("api-service", "stable", 0.002)
	prom := testenv.StartPrometheus(t, traffic.Target)
	prom.WaitQuery(t, errorRateQuery)
	commit := e.productionCommitter(t)
	commit("test: pauses an operator ends", productionValues("1.4.2", prom.URL, canaryWithPauses))
	startAgent(t, e, prod, map[string]string{"env": "production"}, t.TempDir())
	waitRollout(t, prod, "production", "api-service", 2*time.Minute, phaseIs("Healthy"))

	d := &dashboard{b: testenv.StartBrowser(t, hubCertificate(t, e)), url: e.APIURL, shots: t.ArtifactDir()}
	d.open(t, "/")
	d.waitVisible(t, "#signin")
	d.run(t, chromedp.SendKeys(chromedp.CSS("#token"), operatorToken), chromedp.KeyEvent(kb.Enter))
	d.waitText(t, "#whoami", "oncall (operator)")
	commit("deploy: api-service 1.5.0", productionValues("1.5.0", prom.URL, canaryWithPauses))
	d.open(t, "/#/apps/api-service")
	rollout := `section[data-cluster="prod-eu"] article.rollout[data-rollout="production/api-service"]`
	d.waitText(t, rollout+` li[aria-current="step"]`, "pause")
	d.waitText(t, rollout+" table.replica-sets", "canary")

	promote := `button[data-action="promote"][data-cluster="prod-eu"]`
	d.waitVisible(t, promote)
	d.run(t, chromedp.Click(chromedp.CSS(promote)))
	d.waitVisible(t, "#confirm[open]")
	d.run(t, chromedp.Click(chromedp.CSS("#confirm-ok")))
	d.waitText(t, "#outcome", "prod-eu")

	// Past the analysis (five measurements a second apart), at the second
	// pause: the run's measurements plotted, with the template's condition.
	d.waitText(t, rollout+` li[aria-current="step"]`, "pause")
	d.waitText(t, rollout, "Phase: Successful")
	d.waitFor(t, "five plotted measurements", `String(document.querySelectorAll('`+rollout+` figure.metric svg.chart g').length)`,
		func(n string) bool { return n == "5" })
	d.waitText(t, rollout+" figure.metric .conditions", "result[0] <")
	d.check(t, "rollout-analysis")
}
