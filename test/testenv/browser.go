package testenv

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Browser is Debian's Chromium, headless, driven over the DevTools
// protocol with chromedp.
type Browser struct {
	// Ctx runs chromedp actions in the browser's first tab.
	Ctx context.Context

	mu sync.Mutex
	// errors are the page's uncaught exceptions, console errors and
	// Content-Security-Policy violations, as they happened.
	errors []string
}

// cspViolations records the policy violations of every page the browser
// loads, before the page's own scripts run, into window.__cspViolations.
const cspViolations = `window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", e => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));`

// StartBrowser starts Chromium for the test (the chromium package of
// Debian; the test fails without it): headless, with a profile of its
// own, a 1400×1000 window, trusting the certificates trust (for the
// hub's, from its private CA, as a browser whose operator added the CA
// would). Chromium stops when the test ends.
func StartBrowser(t TB, trust ...*x509.Certificate) *Browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("testenv: the dashboard's tests need Debian's chromium (apt-get install chromium): %v", err)
	}
	var spki []string
	for _, c := range trust {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		spki = append(spki, base64.StdEncoding.EncodeToString(sum[:]))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses to run as root
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &Browser{Ctx: ctx}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspViolations}); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("testenv: start chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError && m.Source != "network" {
				b.record(m.String())
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		<-done
	})
	return b
}

func (b *Browser) record(what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errors = append(b.errors, what)
}

// Errors are the uncaught exceptions, console errors (the browser's log
// included, but for failed requests: the page meets a restarting hub) and
// policy violations of the pages so far (the current page's).
func (b *Browser) Errors(t TB) []string {
	t.Helper()
	violations, err := chromedp.Run(b.Ctx, chromedp.Evaluate[[]string](`window.__cspViolations || []`))
	if err != nil {
		t.Fatalf("testenv: read the page's policy violations: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]string(nil), b.errors...)
	for _, v := range violations {
		out = append(out, fmt.Sprintf("Content-Security-Policy violated: %s", v))
	}
	return out
}
