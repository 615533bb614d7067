package api_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/api/apitest"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

func TestFailedAuthRateLimit(t *testing.T) {
	now := time.Date(2026, time.March, 14, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	_, handler := api.NewHandlerAt(apitest.Fleet(now), apitest.ClusterTTL, api.NewAuthAt(apitest.Tokens, apitest.SessionKey, clock), nil, clock, time.Second)
	const (
		unauthenticated = "unauthenticated: token not accepted (expired or wrong)"
		limited         = "resource_exhausted: too many refused tokens from this address: try again in a second"
	)
	steps := []struct {
		name          string
		after         time.Duration // on the clock, since the step before
		from          string
		authorization string
		times         int
		wantStatus    int
		want          string // the error; "" for none
	}{
		{name: "a burst of wrong tokens is refused", from: "192.0.2.1", authorization: bearer("guessed"), times: api.FailedAuthBurst,
			wantStatus: http.StatusUnauthorized, want: unauthenticated},
		{name: "one more is limited", from: "192.0.2.1", authorization: bearer("guessed"), times: 1,
			wantStatus: http.StatusTooManyRequests, want: limited},
		{name: "so is a call without a token", from: "192.0.2.1", times: 1,
			wantStatus: http.StatusTooManyRequests, want: limited},
		{name: "a valid token from the same address is served", from: "192.0.2.1", authorization: bearer(apitest.ViewerToken), times: 3 * api.FailedAuthBurst,
			wantStatus: http.StatusOK},
		{name: "another address has a bucket of its own", from: "192.0.2.2", authorization: bearer("guessed"), times: 1,
			wantStatus: http.StatusUnauthorized, want: unauthenticated},
		{name: "a tenth of a second refills one attempt", after: 100 * time.Millisecond, from: "192.0.2.1", authorization: bearer("guessed"), times: 1,
			wantStatus: http.StatusUnauthorized, want: unauthenticated},
		{name: "and only one", from: "192.0.2.1", authorization: bearer("guessed"), times: 1,
			wantStatus: http.StatusTooManyRequests, want: limited},
		{name: "two seconds refill the burst", after: 2 * time.Second, from: "192.0.2.1", authorization: bearer("guessed"), times: api.FailedAuthBurst,
			wantStatus: http.StatusUnauthorized, want: unauthenticated},
	}
	for _, step := range steps {
		now = now.Add(step.after)
		for i := range step.times {
			if status, got := listClusters(handler, step.from, step.authorization); status != step.wantStatus || got != step.want {
				t.Fatalf("%s: call %d of %d: status %d %q, want %d %q", step.name, i+1, step.times, status, got, step.wantStatus, step.want)
			}
		}
	}
}

// TestFailedAuthRateLimitOverManyAddresses: refusals from thousands of
// addresses, which make the limiter sweep out the buckets that filled up
// again, do not make it forget an address that is still limited.
func TestFailedAuthRateLimitOverManyAddresses(t *testing.T) {
	now := time.Date(2026, time.March, 14, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	_, handler := api.NewHandlerAt(apitest.Fleet(now), apitest.ClusterTTL, api.NewAuthAt(apitest.Tokens, apitest.SessionKey, clock), nil, clock, time.Second)
	refuseMany := func(network byte) {
		for i := range 5000 {
			from := netip.AddrFrom4([4]byte{network, 51, byte(i >> 8), byte(i)}).String()
			if status, _ := listClusters(handler, from, bearer("guessed")); status != http.StatusUnauthorized {
				t.Fatalf("the first refusal of %s: status %d, want %d", from, status, http.StatusUnauthorized)
			}
		}
	}
	refuseMany(198)
	now = now.Add(2 * time.Second) // their buckets fill up again
	for range api.FailedAuthBurst + 1 {
		listClusters(handler, "192.0.2.1", bearer("guessed"))
	}
	refuseMany(203)
	if status, _ := listClusters(handler, "192.0.2.1", bearer("guessed")); status != http.StatusTooManyRequests {
		t.Errorf("192.0.2.1: status %d, want %d", status, http.StatusTooManyRequests)
	}
}

// listClusters calls ListClusters on handler from the address, with the
// Authorization header (none if ""), and returns the answer's status and
// error.
func listClusters(handler http.Handler, from, authorization string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, flotillav1connect.HubServiceListClustersProcedure, nil)
	req.RemoteAddr = from + ":40000"
	req.Header.Set("Content-Type", "application/proto")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec.Code, connectError(rec.Body.String())
}
