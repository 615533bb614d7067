package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flotilla-dev/flotilla/hub/dashboard"
)

// TestServesThePageAndItsAssets: the page and its assets come from the
// binary with the security headers; nothing else is served, nor listed.
func TestServesThePageAndItsAssets(t *testing.T) {
	mux := http.NewServeMux()
	dashboard.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	get := func(t *testing.T, path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	for _, tc := range []struct{ path, contentType, contains string }{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/assets/app.js">`},
		{"/assets/api.js", "text/javascript; charset=utf-8", "WatchFleet"},
		{"/assets/style.css", "text/css; charset=utf-8", "{"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := get(t, tc.path)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.contentType || !strings.Contains(body, tc.contains) {
				t.Fatalf("%s: %s %s, want 200 %s containing %q", tc.path, resp.Status, resp.Header.Get("Content-Type"), tc.contentType, tc.contains)
			}
			for header, want := range map[string]string{
				"Content-Security-Policy": dashboard.ContentSecurityPolicy, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
			} {
				if got := resp.Header.Get(header); got != want {
					t.Errorf("%s: %q, want %q", header, got, want)
				}
			}
		})
	}
	for _, path := range []string{"/assets/", "/assets/missing.js", "/index.html/x", "/secret"} {
		if resp, body := get(t, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %s %q, want 404", path, resp.Status, body)
		}
	}
}
