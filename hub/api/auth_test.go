package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/api/apitest"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// TestRequire guards a plain HTTP endpoint, as the hub guards
// /metrics: any role's token is enough.
func TestRequire(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "flotilla_hub_clusters 2\n") })
	srv := httptest.NewServer(api.NewAuth(apitest.Tokens, apitest.SessionKey).Require(metrics))
	t.Cleanup(srv.Close)
	tests := []struct {
		name          string
		authorization string
		wantStatus    int
		wantBody      string
	}{
		{name: "no token", wantStatus: http.StatusUnauthorized,
			wantBody: `{"code":"unauthenticated","message":"no bearer token: pass --token or set FLOTILLA_TOKEN"}`},
		{name: "not a bearer token", authorization: "Basic " + apitest.ViewerToken, wantStatus: http.StatusUnauthorized,
			wantBody: `{"code":"unauthenticated","message":"no bearer token: pass --token or set FLOTILLA_TOKEN"}`},
		{name: "wrong token", authorization: bearer("guessed"), wantStatus: http.StatusUnauthorized,
			wantBody: `{"code":"unauthenticated","message":"token not accepted (expired or wrong)"}`},
		{name: "a token with more after it", authorization: bearer(apitest.ViewerToken + "x"), wantStatus: http.StatusUnauthorized,
			wantBody: `{"code":"unauthenticated","message":"token not accepted (expired or wrong)"}`},
		{name: "viewer", authorization: bearer(apitest.ViewerToken), wantStatus: http.StatusOK, wantBody: "flotilla_hub_clusters 2\n"},
		{name: "admin", authorization: bearer(apitest.AdminToken), wantStatus: http.StatusOK, wantBody: "flotilla_hub_clusters 2\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.wantBody, string(body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if got, want := resp.Header.Get("WWW-Authenticate"), map[bool]string{true: "Bearer"}[tc.wantStatus == http.StatusUnauthorized]; got != want {
				t.Errorf("WWW-Authenticate %q, want %q", got, want)
			}
		})
	}
}

// TestRefusedCallsAreNotRead: a call without an accepted token is
// answered before a byte of its body is read, let alone decompressed.
func TestRefusedCallsAreNotRead(t *testing.T) {
	tests := []struct {
		name          string
		authorization string
		want          string
	}{
		{name: "no token", want: `{"code":"unauthenticated","message":"no bearer token: pass --token or set FLOTILLA_TOKEN"}`},
		{name: "wrong token", authorization: bearer("guessed"), want: `{"code":"unauthenticated","message":"token not accepted (expired or wrong)"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub := apitest.Fleet(time.Now())
			_, handler := api.NewHandler(hub, apitest.ClusterTTL, api.NewAuth(apitest.Tokens, apitest.SessionKey), nil)
			body := &watchedBody{}
			req := httptest.NewRequest(http.MethodPost, flotillav1connect.HubServiceSyncAppProcedure, body)
			req.Header.Set("Content-Type", "application/proto")
			req.Header.Set("Content-Encoding", "gzip")
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("status %d, want %d", rec.Code, http.StatusUnauthorized)
			}
			if diff := cmp.Diff(tc.want, rec.Body.String()); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if body.read {
				t.Error("the body of a refused call was read")
			}
			if len(hub.Calls()) > 0 || len(hub.Audits()) > 0 {
				t.Errorf("a refused call reached the hub: calls %v, audits %v", hub.Calls(), hub.Audits())
			}
		})
	}
}

// watchedBody is a request body that notes whether anyone read it.
type watchedBody struct{ read bool }

func (b *watchedBody) Read([]byte) (int, error) {
	b.read = true
	return 0, io.EOF
}

// TestRefusalsSpeakTheCallersProtocol: a refused gRPC or gRPC-Web client
// reads the same error as a Connect one.
func TestRefusalsSpeakTheCallersProtocol(t *testing.T) {
	_, handler := api.NewHandler(apitest.Fleet(time.Now()), apitest.ClusterTTL, api.NewAuth(apitest.Tokens, apitest.SessionKey), nil)
	srv := httptest.NewUnstartedServer(handler)
	srv.EnableHTTP2 = true // gRPC needs it
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tests := []struct {
		name     string
		protocol []connect.ClientOption
	}{
		{name: "Connect"},
		{name: "gRPC", protocol: []connect.ClientOption{connect.WithGRPC()}},
		{name: "gRPC-Web", protocol: []connect.ClientOption{connect.WithGRPCWeb()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := flotillav1connect.NewHubServiceClient(srv.Client(), srv.URL, tc.protocol...)
			_, err := c.SyncApp(t.Context(), connect.NewRequest(&flotillav1.SyncAppRequest{App: "api-service"}))
			if diff := cmp.Diff("unauthenticated: no bearer token: pass --token or set FLOTILLA_TOKEN", errorString(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

// connectError is the code and message of a Connect unary error body, ""
// for a body that is not one.
func connectError(body string) string {
	var e struct{ Code, Message string }
	if json.Unmarshal([]byte(body), &e) != nil || e.Code == "" {
		return ""
	}
	return strings.TrimSuffix(e.Code+": "+e.Message, ": ")
}
