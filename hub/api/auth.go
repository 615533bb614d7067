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

// Why RequireToken refuses a request, as the caller reads it.
var (
	errNoToken       = errors.New("no bearer token: pass --token or set FLOTILLA_TOKEN")
	errWrongToken    = errors.New("token not accepted (expired or wrong)")
	errTooManyWrongs = errors.New("too many refused tokens from this address: try again in a second")
)

// RequireToken serves next only the requests that present one of tokens,
// of any role, as a bearer token; next finds the token in the request's
// context. It refuses the others before it reads a byte of their body, as
// Unauthenticated (HTTP 401), or, once their remote IP has been refused
// more than failedAuthBurst times in quick succession, as
// ResourceExhausted (HTTP 429). Requests with an accepted token are never
// rate-limited. The errors are written in the protocol of the request
// (Connect, gRPC, gRPC-Web; Connect's JSON for anything else).
func RequireToken(tokens []Token, next http.Handler) http.Handler {
	return requireToken(tokens, time.Now, next)
}

// requireToken is RequireToken with the rate limiter on clock now.
func requireToken(tokens []Token, now func() time.Time, next http.Handler) http.Handler {
	accepted := newTokenSet(tokens)
	limiter := newFailureLimiter(now)
	errorWriter := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := accepted.presentedBy(r)
		if err == nil {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, t)))
			return
		}
		refusal := connect.NewError(connect.CodeUnauthenticated, err)
		if limiter.allow(remoteIP(r)) {
			w.Header().Set("WWW-Authenticate", "Bearer")
		} else {
			refusal = connect.NewError(connect.CodeResourceExhausted, errTooManyWrongs)
		}
		_ = errorWriter.Write(w, r, refusal)
	})
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
	digest := sha256.Sum256([]byte(presented))
	match := -1
	for i := range s.digests {
		if subtle.ConstantTimeCompare(digest[:], s.digests[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return Token{}, errWrongToken
	}
	return s.tokens[match], nil
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

// caller is the token that RequireToken accepted for the call.
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
func authorize() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			need, known := requiredRole[req.Spec().Procedure]
			if !known {
				need = Admin
			}
			if t := caller(ctx); t.Role < need {
				return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("token %q may not call %s", t.Name, req.Spec().Procedure))
			}
			return next(ctx, req)
		}
	}
}
