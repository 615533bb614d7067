package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flotilla-dev/flotilla/test/testenv"
)

// The fleet the dashboard's benchmark shows: issue 19's 1,000 clusters ×
// 20 applications, each cluster a simulated agent.
const (
	dashboardClusters = 1000
	dashboardApps     = 20
	// dashboardPageRows is how many clusters a page of the fleet matrix
	// shows (hub/dashboard/assets/fleet.js).
	dashboardPageRows = 50
)

// BenchmarkDashboardFleetMatrix measures the dashboard's first render of
// the fleet matrix in Debian's Chromium, for the hub binary with 1,000
// simulated agents (test/bench/fleetsim) of 20 applications each, all
// synced: from the navigation to the first page of the matrix on screen,
// its 50 clusters × 20 applications drawn. That covers loading the page,
// the caller's WhoAmI, the WatchFleet stream's snapshot of 20,000
// applications and 1,000 clusters, and the render. Target: under 1 s.
// Then the hub process's CPU over 30 s with the page open, and over 30 s
// after it closed.
func BenchmarkDashboardFleetMatrix(b *testing.B) {
	h := startSimHub(b, dashboardApps)
	a := watchApplied(b, h)
	h.startFleet(b, a, dashboardClusters, dashboardApps)

	resp, err := h.http.Get(h.apiURL + "/healthz")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	browser := testenv.StartBrowser(b, resp.TLS.PeerCertificates[0])
	// Signed in as the page signs in: its session cookie, set by the hub.
	if err := chromedp.Do(browser.Ctx, chromedp.Navigate(h.apiURL+"/")); err != nil {
		b.Fatal(err)
	}
	if _, err := chromedp.Run(browser.Ctx, chromedp.Evaluate[bool](fmt.Sprintf(`fetch("/api/session", {method: "POST",
		headers: {"Content-Type": "application/json"}, body: JSON.stringify({token: %q})}).then(r => r.ok)`, simAdminToken),
		chromedp.EvalAwaitPromise)); err != nil {
		b.Fatal(err)
	}
	// Resolves, in the page, at the first frame that shows the whole first
	// page of the matrix, with the milliseconds since the navigation.
	const rendered = `new Promise(resolve => {
		const drawn = () => document.querySelectorAll("#fleet-matrix td[data-sync]").length >= %d
			? resolve(performance.now()) : requestAnimationFrame(drawn);
		drawn();
	})`
	ctx, cancel := context.WithTimeout(browser.Ctx, 5*time.Minute)
	defer cancel()
	for b.Loop() {
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(h.apiURL+"/#/")); err != nil {
			b.Fatal(err)
		}
		ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](fmt.Sprintf(rendered, dashboardPageRows*dashboardApps), chromedp.EvalAwaitPromise))
		if err != nil {
			b.Fatal(err)
		}
		reportNow(b, ms, "first-render-ms")

		// What the open page costs the hub (its stream compares the fleet
		// each second), beside the fleet's own heartbeats and statuses.
		reportNow(b, hubCPU(h, 30*time.Second), "hub-cpu-%-watched")
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
			b.Fatal(err)
		}
		reportNow(b, hubCPU(h, 30*time.Second), "hub-cpu-%-unwatched")
	}
	if errs := browser.Errors(b); len(errs) > 0 {
		b.Fatalf("the page reported errors: %v", errs)
	}
}

// hubCPU is the share of a core the hub process used over the next window.
func hubCPU(h *simHub, window time.Duration) float64 {
	pid := h.proc.cmd.Process.Pid
	cpu0, t0 := procCPU(pid), time.Now()
	time.Sleep(window)
	return 100 * (procCPU(pid) - cpu0).Seconds() / time.Since(t0).Seconds()
}
