package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// Why Auth refuses a request, as the caller reads it.
var (
	errNoToken       = errors.New("no bearer token: pass --token or set FLOTILLA_TOKEN")
	errWrongToken    = errors.New("token not accepted (expired or wrong)")
	errTooManyWrongs = errors.New("too many refused tokens from this address: try again in a second")
	errCrossOrigin   = errors.New("a call with the dashboard's session must come from the dashboard's own pages")
)

// Auth accepts the hub's API tokens: presented as a bearer token, as the
// CLI does, or through the session cookie the dashboard's sign-in sets.
type Auth struct {
	tokens   *tokenSet
	sessions *sessions
	limiter  *failureLimiter
	// sameOrigin refuses what a page of another origin makes a browser
	// send: the session cookie goes along with any request to the hub.
	sameOrigin *http.CrossOriginProtection
}

// NewAuth accepts tokens; sessionKey (32 bytes, the same on every hub
// replica) signs the session cookies.
func NewAuth(tokens []Token, sessionKey []byte) *Auth { return newAuth(tokens, sessionKey, time.Now) }

// newAuth is NewAuth on clock now (sessions and the rate limiter).
func newAuth(tokens []Token, sessionKey []byte, now func() time.Time) *Auth {
	set := newTokenSet(tokens)
	return &Auth{tokens: set, sessions: newSessions(sessionKey, set, now), limiter: newFailureLimiter(now),
		sameOrigin: http.NewCrossOriginProtection()}
}

// Require serves next only the requests that present one of the tokens,
// of any role, as a bearer token or through a current session cookie;
// next finds the token in the request's context. A request that relies on
// the cookie must come from the hub's own origin (its browser's
// Sec-Fetch-Site or Origin says so), or it is refused as PermissionDenied:
// that is the dashboard's defence against cross-site request forgery, with
// the cookie's SameSite=Strict. Require refuses the others before it reads
// a byte of their body, as Unauthenticated (HTTP 401), or, once their
// remote IP has presented wrong bearer tokens more than failedAuthBurst
// times in quick succession, as ResourceExhausted (HTTP 429). Requests
// with an accepted token are never rate-limited. The errors are written in
// the protocol of the request (Connect, gRPC, gRPC-Web; Connect's JSON for
// anything else).
func (a *Auth) Require(next http.Handler) http.Handler {
	errorWriter := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := a.tokens.presentedBy(r)
		if errors.Is(err, errNoToken) {
			t, end, err := a.sessions.tokenOf(r)
			switch {
			case errors.Is(err, errNoSession):
				// Neither a bearer token nor a session: refused below.
			case err != nil:
				_ = errorWriter.Write(w, r, connect.NewError(connect.CodeUnauthenticated, err))
				return
			case a.sameOrigin.Check(r) != nil:
				_ = errorWriter.Write(w, r, connect.NewError(connect.CodePermissionDenied, errCrossOrigin))
				return
			default:
				ctx := context.WithValue(context.WithValue(r.Context(), callerKey{}, t), sessionEndKey{}, end)
				next.ServeHTTP(w, r.WithContext(ctx))
				return
			}
		}
		if err == nil {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, t)))
			return
		}
		_ = errorWriter.Write(w, r, a.refusal(w, r, err))
	})
}

// refusal is the error for a request that presented no accepted token:
// Unauthenticated, or ResourceExhausted once its IP has been refused too
// often.
func (a *Auth) refusal(w http.ResponseWriter, r *http.Request, err error) *connect.Error {
	if !a.limiter.allow(remoteIP(r)) {
		return connect.NewError(connect.CodeResourceExhausted, errTooManyWrongs)
	}
	w.Header().Set("WWW-Authenticate", "Bearer")
	return connect.NewError(connect.CodeUnauthenticated, err)
}

// tokenSet finds the token a request presents. It compares SHA-256
// digests in constant time, against every token, so that timing tells
// neither a token's value, nor its length, nor which one matched.
type tokenSet struct {
	tokens  []Token
	digests [][sha256.Size]byte
}

func newTokenSet(tokens []Token) *tokenSet {
	s := &tokenSet{tokens: tokens, digests: make([][sha256.Size]byte, len(tokens))}
	for i, t := range tokens {
		s.digests[i] = sha256.Sum256([]byte(t.Value))
	}
	return s
}

// presentedBy is the token in r's Authorization header; errNoToken when
// there is no bearer token, errWrongToken when it is none of the set.
func (s *tokenSet) presentedBy(r *http.Request) (Token, error) {
	presented, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || presented == "" {
		return Token{}, errNoToken
	}
	t, ok := s.valued(presented)
	if !ok {
		return Token{}, errWrongToken
	}
	return t, nil
}

// valued is the token whose value is presented.
func (s *tokenSet) valued(presented string) (Token, bool) {
	digest := sha256.Sum256([]byte(presented))
	match := -1
	for i := range s.digests {
		if subtle.ConstantTimeCompare(digest[:], s.digests[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return Token{}, false
	}
	return s.tokens[match], true
}

// named is the token called name.
func (s *tokenSet) named(name string) (Token, bool) {
	for _, t := range s.tokens {
		if t.Name == name {
			return t, true
		}
	}
	return Token{}, false
}

// remoteIP is the address r came from, without its port. Behind a proxy
// it is the proxy's: a forwarded-for header is the caller's to forge.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type callerKey struct{}

// caller is the token that Auth accepted for the call.
func caller(ctx context.Context) Token {
	t, _ := ctx.Value(callerKey{}).(Token)
	return t
}

// actor is the name of the token that made the call.
func actor(ctx context.Context) string { return caller(ctx).Name }

// requiredRole is the least role of each procedure: reads need Viewer,
// everything that changes the fleet Operator.
var requiredRole = map[string]Role{
	flotillav1connect.HubServiceListClustersProcedure:        Viewer,
	flotillav1connect.HubServiceListAppsProcedure:            Viewer,
	flotillav1connect.HubServiceGetAppProcedure:              Viewer,
	flotillav1connect.HubServiceGetAppHistoryProcedure:       Viewer,
	flotillav1connect.HubServiceDiffAppProcedure:             Viewer,
	flotillav1connect.HubServiceListEventsProcedure:          Viewer,
	flotillav1connect.HubServiceSyncAppProcedure:             Operator,
	flotillav1connect.HubServiceRollbackAppProcedure:         Operator,
	flotillav1connect.HubServiceRevertAppProcedure:           Operator,
	flotillav1connect.HubServiceUnpinAppProcedure:            Operator,
	flotillav1connect.HubServiceRolloutAppProcedure:          Operator,
	flotillav1connect.HubServiceGetFleetRolloutProcedure:     Viewer,
	flotillav1connect.HubServicePromoteFleetRolloutProcedure: Operator,
	flotillav1connect.HubServiceAbortFleetRolloutProcedure:   Operator,
	flotillav1connect.HubServiceWhoAmIProcedure:              Viewer,
	flotillav1connect.HubServiceWatchFleetProcedure:          Viewer,
}

// ServedByAnyReplica reports whether every hub replica serves the call
// at path (a HubService procedure), not only the leader: the reads, which
// the viewer role may make. A path that is no procedure is the leader's.
func ServedByAnyReplica(path string) bool {
	role, known := requiredRole[path]
	return known && role == Viewer
}

// authorize refuses a call whose token's role is below the one its
// procedure needs. A procedure missing from requiredRole needs Admin.
type authorize struct{}

func (authorize) check(ctx context.Context, procedure string) error {
	need, known := requiredRole[procedure]
	if !known {
		need = Admin
	}
	if t := caller(ctx); t.Role < need {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("token %q may not call %s", t.Name, procedure))
	}
	return nil
}

func (a authorize) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := a.check(ctx, req.Spec().Procedure); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a authorize) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := a.check(ctx, conn.Spec().Procedure); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// WrapStreamingClient leaves clients alone: authorize is the server's.
func (authorize) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}
