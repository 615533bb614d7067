package apitest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/hub/api"
)

// The tokens Serve accepts, one per role.
const (
	ViewerToken   = "viewer-secret"
	OperatorToken = "operator-secret"
	AdminToken    = "admin-secret"
)

// Tokens are the tokens Serve accepts: "vera" views, "otto" operates and
// "ada" administers.
var Tokens = []api.Token{
	{Name: "vera", Value: ViewerToken, Role: api.Viewer},
	{Name: "otto", Value: OperatorToken, Role: api.Operator},
	{Name: "ada", Value: AdminToken, Role: api.Admin},
}

// SessionKey signs Serve's session cookies.
var SessionKey = []byte("0123456789abcdef0123456789abcdef")

// ClusterTTL is how long after its last heartbeat Serve's API counts a
// cluster as connected.
const ClusterTTL = time.Minute

// Serve serves the real API handler over hub, accepting Tokens (and the
// session cookies of /api/session, signed with SessionKey), on a local
// HTTP server that closes with the test, and returns the server's URL.
func Serve(t testing.TB, hub api.Hub) string {
	t.Helper()
	auth := api.NewAuth(Tokens, SessionKey)
	path, handler := api.NewHandler(hub, ClusterTTL, auth, nil)
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	mux.HandleFunc("/api/session", auth.ServeSession)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}
