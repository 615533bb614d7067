package e2e

import (
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestDashboardFleetRollout drives the dashboard's fleet rollouts in
// Debian's Chromium against the fleet of TestFleetRolloutInWaves: three
// hub replicas, four real clusters and their agents, a real Prometheus.
// The web ApplicationSet's waves and their clusters show on the page as
// the new version goes out, the canary's wave waits there for approval,
// an operator promotes it from the page, and production then gets the
// new version; each page is checked by axe-core and saved as a screenshot
// under the test's artifacts.
func TestDashboardFleetRollout(t *testing.T) {
	f := startFleetOfFour(t)
	lead := f.leader(t, -1)

	f.allOnV1(t, lead)

	d := &dashboard{b: testenv.StartBrowser(t, replicaCertificate(t, f.hubReplicas, lead)), url: f.apiURLs[lead], shots: t.ArtifactDir()}
	step := newSteps(t)
	section := `section[data-fleet-rollout="web"]`
	wave := func(i int) string { return fmt.Sprintf(`%s article.wave[data-wave="%d"]`, section, i) }
	target := func(i int, cluster string) string { return fmt.Sprintf(`%s tr[data-cluster=%q]`, wave(i), cluster) }

	step.run("an operator signs in", func(t *testing.T) {
		d.open(t, "/")
		d.waitVisible(t, "#signin")
		d.run(t, chromedp.SendKeys(chromedp.CSS("#token"), operatorToken), chromedp.KeyEvent(kb.Enter))
		d.waitText(t, "#whoami", "oncall (operator)")
	})

	step.run("the rollouts view shows the waves and their clusters; the canary's waits for approval", func(t *testing.T) {
		f.setVersion(t, "v2")
		f.waitRollout(t, lead, "v2", 3*time.Minute, inPhase(flotillav1.FleetPhase_FLEET_PHASE_PAUSED, 1))

		d.open(t, "/#/rollouts")
		row := `#fleet-rollouts tr[data-fleet-rollout="web"]`
		d.waitAttr(t, row, "data-phase", "Paused")
		d.waitText(t, row, "wave 1 waits for approval")
		d.check(t, "fleet-rollouts-list")

		d.clickLink(t, row+` a[href="#/rollouts/web"]`)
		d.waitAttr(t, section, "data-phase", "Paused")
		// Every wave with its clusters, in the RollingSync steps' order.
		for i, c := range []string{"staging-1", "prod-canary", "prod-eu", "prod-us"} {
			d.waitText(t, target(min(i, 2), c), "web-"+c)
		}
		d.waitAttr(t, wave(0), "data-phase", "Succeeded")
		d.waitText(t, target(0, "staging-1"), "Synced, Healthy")
		d.waitText(t, target(0, "staging-1"), "Successful error-rate=")
		// The current wave is marked, in words too, and says what it waits
		// for; production's is pending, released to no cluster.
		d.waitAttr(t, wave(1), "aria-current", "step")
		d.waitAttr(t, wave(1), "data-phase", "Gated")
		d.waitText(t, wave(1)+" h3", "current")
		d.waitText(t, wave(1)+" h3", "Paused: waits for approval")
		d.waitText(t, wave(1), "analysis error-rate (all must pass), approval")
		d.waitText(t, target(1, "prod-canary"), "Synced, Healthy")
		d.waitText(t, target(1, "prod-canary"), "Successful error-rate=")
		d.waitAttr(t, wave(2), "data-phase", "Pending")
		d.waitText(t, target(2, "prod-eu"), "not yet")
		if got := eval[int](t, d, `document.querySelectorAll('article.wave[aria-current]').length`); got != 1 {
			t.Errorf("%d waves are marked current, want 1", got)
		}
		for _, c := range []string{"prod-eu", "prod-us"} {
			if got := f.runs(t, c); got != "v1" {
				t.Errorf("%s runs %s before the approval", c, got)
			}
		}
		d.check(t, "fleet-rollouts")
	})

	step.run("the operator promotes the canary's wave from the page; production gets v2", func(t *testing.T) {
		promote := section + ` button[data-action="fleet-promote"]`
		d.waitAttr(t, promote, "data-wave", "1")
		d.waitVisible(t, section+` button[data-action="fleet-abort"]`)
		d.waitVisible(t, section+` button[data-action="fleet-abort-rollback"]`)
		d.run(t, chromedp.Click(chromedp.CSS(promote)))
		d.waitVisible(t, "#confirm[open]")
		d.waitText(t, "#confirm-text", "Promote wave 1 of web")
		d.check(t, "fleet-rollout-promote-confirm")
		d.run(t, chromedp.Click(chromedp.CSS("#confirm-ok")))
		d.waitText(t, "#outcome", "Promote wave 1 of web:")
		d.waitText(t, "#outcome", "ApplicationSet/web@")

		// Through the real hub, agents and clusters: the approval is the
		// operator's, and production runs v2.
		r := f.waitRollout(t, lead, "v2", 3*time.Minute, inPhase(flotillav1.FleetPhase_FLEET_PHASE_SUCCEEDED, 2))
		if got := r.GetWaves()[1].GetApprovedBy(); got != "oncall" {
			t.Errorf("wave 1 approved by %q, want oncall", got)
		}
		for _, c := range []string{"prod-eu", "prod-us"} {
			f.waitRuns(t, c, "v2")
		}
		// And live on the page, without a reload.
		d.waitAttr(t, section, "data-phase", "Succeeded")
		d.waitText(t, wave(1), "given by oncall")
		d.waitAttr(t, wave(2), "aria-current", "step")
		d.waitAttr(t, wave(2), "data-phase", "Succeeded")
		for _, c := range []string{"prod-eu", "prod-us"} {
			d.waitText(t, target(2, c), "Synced, Healthy")
		}
		if n := eval[int](t, d, `document.querySelectorAll('button[data-action^="fleet-"]').length`); n != 0 {
			t.Errorf("a succeeded rollout offers %d actions", n)
		}
		d.check(t, "fleet-rollout-promoted")
	})

	step.run("an application's page links to the fleet rollout that releases it", func(t *testing.T) {
		d.open(t, "/#/apps/web-prod-eu")
		note := `p[data-fleet-rollout-note="web"]`
		d.waitText(t, note, "Succeeded")
		d.waitText(t, note, "web-prod-eu is in wave 2")
		d.clickLink(t, note+" a")
		d.waitAttr(t, section, "data-phase", "Succeeded")
	})

	step.run("a viewer sees the waves and no action", func(t *testing.T) {
		d.run(t, chromedp.Click(`//button[normalize-space()="Sign out"]`))
		d.waitVisible(t, "#signin")
		d.run(t, chromedp.SendKeys(chromedp.CSS("#token"), apiToken), chromedp.KeyEvent(kb.Enter))
		d.waitText(t, "#whoami", "ops (viewer)")
		d.open(t, "/#/rollouts/web")
		d.waitText(t, target(2, "prod-us"), "web-prod-us")
		actions := eval[[]string](t, d, `[...document.querySelectorAll("main button")].map(b => b.textContent.trim())`)
		if len(actions) > 0 {
			t.Errorf("a viewer's page shows the actions %q", actions)
		}
	})

	if errs := d.b.Errors(t); len(errs) > 0 {
		t.Errorf("the pages reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

// replicaCertificate is the certificate replica i serves its API with.
func replicaCertificate(t *testing.T, r *hubReplicas, i int) *x509.Certificate {
	t.Helper()
	resp, err := r.http.Get(r.apiURLs[i] + "/healthz")
	must(t, err)
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0]
}
