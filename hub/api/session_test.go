package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/api/apitest"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// withHeaders is a transport that sets headers on every request, as a
// browser sets the cookie and Sec-Fetch-Site.
type withHeaders map[string]string

func (h withHeaders) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// browser is a HubService client that sends what a browser would with the
// session cookie, from the page at site (a Sec-Fetch-Site value).
func browser(url string, cookie *http.Cookie, site string) flotillav1connect.HubServiceClient {
	return flotillav1connect.NewHubServiceClient(&http.Client{Transport: withHeaders{"Cookie": cookie.String(), "Sec-Fetch-Site": site}}, url)
}

// sessionServer serves the API and the sign-in over apitest.Fleet with
// Tokens (tokens when set), on a clock the test moves.
func sessionServer(t *testing.T, clock *atomic.Int64, tokens []api.Token) string {
	t.Helper()
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	auth := api.NewAuthAt(tokens, apitest.SessionKey, now)
	path, handler := api.NewHandlerAt(apitest.Fleet(now()), apitest.ClusterTTL, auth, nil, now, time.Second)
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	mux.HandleFunc("/api/session", auth.ServeSession)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// signIn posts token to url's sign-in from site and returns the answer.
func signIn(t *testing.T, url, token, site string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/api/session", strings.NewReader(`{"token":"`+token+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", site)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// sessionCookie signs in with token and returns the session cookie.
func sessionCookie(t *testing.T, url, token string) *http.Cookie {
	t.Helper()
	resp, body := signIn(t, url, token, "same-origin")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign in: %s %s", resp.Status, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == api.SessionCookie {
			return c
		}
	}
	t.Fatalf("sign in set no %s cookie: %v", api.SessionCookie, resp.Header["Set-Cookie"])
	return nil
}

func TestSessions(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, time.March, 14, 9, 0, 0, 0, time.UTC).UnixNano())
	url := sessionServer(t, &clock, apitest.Tokens)
	ctx := t.Context()
	whoAmI := func(c flotillav1connect.HubServiceClient) (*flotillav1.WhoAmIResponse, error) {
		resp, err := c.WhoAmI(ctx, connect.NewRequest(&flotillav1.WhoAmIRequest{}))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}

	t.Run("the cookie is the browser's only, for this host, over TLS", func(t *testing.T) {
		c := sessionCookie(t, url, apitest.OperatorToken)
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" ||
			c.MaxAge != int(api.SessionLifetime/time.Second) {
			t.Errorf("cookie %s: want HttpOnly, Secure, SameSite=Strict, Path=/, no Domain, Max-Age %s", c, api.SessionLifetime)
		}
		if strings.Contains(c.Value, apitest.OperatorToken) {
			t.Errorf("cookie %q carries the token", c.Value)
		}
	})

	t.Run("a session calls with its token's name and role", func(t *testing.T) {
		for _, tc := range []struct{ token, name, role string }{
			{apitest.ViewerToken, "vera", "viewer"}, {apitest.OperatorToken, "otto", "operator"}, {apitest.AdminToken, "ada", "admin"},
		} {
			got, err := whoAmI(browser(url, sessionCookie(t, url, tc.token), "same-origin"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.name+"/"+tc.role, got.GetName()+"/"+got.GetRole()); diff != "" {
				t.Errorf("WhoAmI (-want +got):\n%s", diff)
			}
		}
	})

	t.Run("a viewer's session may not act", func(t *testing.T) {
		c := browser(url, sessionCookie(t, url, apitest.ViewerToken), "same-origin")
		_, err := c.SyncApp(ctx, connect.NewRequest(&flotillav1.SyncAppRequest{App: "api-service"}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("viewer's SyncApp: %v, want permission_denied", err)
		}
	})

	t.Run("another site's page cannot call with the cookie", func(t *testing.T) {
		cookie := sessionCookie(t, url, apitest.OperatorToken)
		for _, site := range []string{"cross-site", "same-site"} {
			_, err := browser(url, cookie, site).SyncApp(ctx, connect.NewRequest(&flotillav1.SyncAppRequest{App: "api-service"}))
			if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "own pages") {
				t.Errorf("SyncApp from a %s page: %v, want permission_denied", site, err)
			}
		}
		if resp, body := signIn(t, url, apitest.OperatorToken, "cross-site"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("sign-in from another site: %s %s, want 403", resp.Status, body)
		}
	})

	t.Run("a forged, altered or foreign cookie is refused", func(t *testing.T) {
		real := sessionCookie(t, url, apitest.ViewerToken)
		parts := strings.Split(real.Value, ".")
		asAda := *real
		asAda.Value = strings.Join([]string{parts[0], "YWRh" /* ada */, parts[2], parts[3]}, ".")
		later := *real
		later.Value = strings.Join([]string{parts[0], parts[1], "99999999999", parts[3]}, ".")
		garbage := *real
		garbage.Value = "v1.x.y.z"
		for name, c := range map[string]*http.Cookie{"another name": &asAda, "a later expiry": &later, "garbage": &garbage} {
			_, err := whoAmI(browser(url, c, "same-origin"))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("%s: %v, want unauthenticated", name, err)
			}
		}
		// Another hub, with another signing key, refuses this hub's cookie.
		otherAuth := api.NewAuth(apitest.Tokens, []byte("another hub's key, 32 bytes long"))
		path, handler := api.NewHandler(apitest.Fleet(time.Now()), apitest.ClusterTTL, otherAuth, nil)
		mux := http.NewServeMux()
		mux.Handle(path, handler)
		other := httptest.NewServer(mux)
		defer other.Close()
		if _, err := whoAmI(browser(other.URL, real, "same-origin")); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("another hub's cookie: %v, want unauthenticated", err)
		}
	})

	t.Run("a session ends with its lifetime", func(t *testing.T) {
		c := browser(url, sessionCookie(t, url, apitest.ViewerToken), "same-origin")
		clock.Add(int64(api.SessionLifetime - time.Second))
		if _, err := whoAmI(c); err != nil {
			t.Fatalf("a second before the end: %v", err)
		}
		clock.Add(int64(time.Second))
		_, err := whoAmI(c)
		if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "session expired") {
			t.Errorf("at the end: %v, want unauthenticated: session expired", err)
		}
	})

	t.Run("a changed token ends its sessions", func(t *testing.T) {
		cookie := sessionCookie(t, url, apitest.OperatorToken)
		rotated := []api.Token{{Name: "otto", Value: "otto's new secret", Role: api.Operator}}
		_, err := whoAmI(browser(sessionServer(t, &clock, rotated), cookie, "same-origin"))
		if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "changed or was removed") {
			t.Errorf("after the token changed: %v, want unauthenticated", err)
		}
	})

	t.Run("a wrong token does not sign in, and guessing is rate-limited", func(t *testing.T) {
		resp, body := signIn(t, url, "guessed", "same-origin")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "token not accepted") || len(resp.Cookies()) != 0 {
			t.Fatalf("wrong token: %s %s %v", resp.Status, body, resp.Cookies())
		}
		for range api.FailedAuthBurst {
			resp, body = signIn(t, url, "guessed", "same-origin")
		}
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("after %d wrong tokens: %s %s, want 429", api.FailedAuthBurst+1, resp.Status, body)
		}
	})

	t.Run("signing out clears the cookie", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, url+"/api/session", nil)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cookies := resp.Cookies()
		if resp.StatusCode != http.StatusNoContent || len(cookies) != 1 || cookies[0].Name != api.SessionCookie || cookies[0].MaxAge >= 0 {
			t.Errorf("sign out: %s %v, want 204 and an expired %s", resp.Status, cookies, api.SessionCookie)
		}
	})
}

// TestSessionCookieIsNotABearerToken: a bearer token, when sent, is what
// counts; a wrong one is refused even with a good cookie.
func TestSessionCookieIsNotABearerToken(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	url := sessionServer(t, &clock, apitest.Tokens)
	cookie := sessionCookie(t, url, apitest.AdminToken)
	c := flotillav1connect.NewHubServiceClient(&http.Client{Transport: withHeaders{
		"Cookie": cookie.String(), "Sec-Fetch-Site": "same-origin", "Authorization": bearer("guessed"),
	}}, url)
	_, err := c.WhoAmI(context.Background(), connect.NewRequest(&flotillav1.WhoAmIRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("wrong bearer token with a good cookie: %v, want unauthenticated", err)
	}
}
