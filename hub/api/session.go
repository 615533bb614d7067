package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SessionCookie is the dashboard's session cookie. The __Host- prefix
// makes browsers keep it only when it is Secure, for this host alone and
// for every path.
const SessionCookie = "__Host-flotilla-session"

// SessionLifetime is how long a dashboard sign-in lasts.
const SessionLifetime = 12 * time.Hour

// maxSignInBytes bounds a sign-in's body: a token in a JSON object.
const maxSignInBytes = 4 << 10

// Why a session cookie is refused.
var (
	errNoSession      = errors.New("no session cookie")
	errSessionExpired = errors.New("session expired: sign in again")
	errSessionInvalid = errors.New("session not accepted (its token changed or was removed): sign in again")
)

// sessions signs and checks session cookies without storing anything, so
// that every hub replica, and a restarted hub, accepts them. A cookie is
//
//	v1.<token name, base64url>.<expiry, unix seconds>.<MAC, base64url>
//
// with the MAC an HMAC-SHA256, under a key derived from the hub's signing
// key, of the name, the expiry and the SHA-256 of the token's value: a
// cookie holds no token, cannot be forged or prolonged, and stops working
// when its token is changed or removed from the hub's configuration.
type sessions struct {
	key    []byte
	tokens *tokenSet
	now    func() time.Time
}

func newSessions(key []byte, tokens *tokenSet, now func() time.Time) *sessions {
	return &sessions{key: key, tokens: tokens, now: now}
}

// issue is a session cookie for t, valid for SessionLifetime.
func (s *sessions) issue(t Token) *http.Cookie {
	expiry := s.now().Add(SessionLifetime).Unix()
	value := strings.Join([]string{"v1", base64.RawURLEncoding.EncodeToString([]byte(t.Name)), strconv.FormatInt(expiry, 10),
		base64.RawURLEncoding.EncodeToString(s.mac(t, expiry))}, ".")
	return &http.Cookie{Name: SessionCookie, Value: value, Path: "/", MaxAge: int(SessionLifetime / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
}

// ended is the cookie that makes a browser forget the session.
func ended() *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
}

func (s *sessions) mac(t Token, expiry int64) []byte {
	digest := sha256.Sum256([]byte(t.Value))
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "flotilla dashboard session v1\x00%s\x00%d\x00", t.Name, expiry)
	m.Write(digest[:])
	return m.Sum(nil)
}

// tokenOf is the token whose session r's cookie carries, and when the
// session ends; errNoSession without a cookie.
func (s *sessions) tokenOf(r *http.Request) (Token, time.Time, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return Token{}, time.Time{}, errNoSession
	}
	return s.check(c.Value)
}

// check is the token whose session a cookie's value carries, and when
// the session ends.
func (s *sessions) check(value string) (Token, time.Time, error) {
	parts := strings.Split(value, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return Token{}, time.Time{}, errSessionInvalid
	}
	name, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	expiry, err2 := strconv.ParseInt(parts[2], 10, 64)
	mac, err3 := base64.RawURLEncoding.DecodeString(parts[3])
	if err := errors.Join(err1, err2, err3); err != nil {
		return Token{}, time.Time{}, errSessionInvalid
	}
	t, ok := s.tokens.named(string(name))
	if !ok || !hmac.Equal(mac, s.mac(t, expiry)) {
		return Token{}, time.Time{}, errSessionInvalid
	}
	end := time.Unix(expiry, 0)
	if !s.now().Before(end) {
		return Token{}, time.Time{}, errSessionExpired
	}
	return t, end, nil
}

type sessionEndKey struct{}

// sessionEnd is when the session a call came with ends; zero for a call
// with a bearer token.
func sessionEnd(ctx context.Context) time.Time {
	end, _ := ctx.Value(sessionEndKey{}).(time.Time)
	return end
}

// ServeSession signs the dashboard in and out: POST with the JSON
// {"token": "..."} checks the token as Require does (rate limit
// included) and answers 204 with the session cookie; DELETE answers 204
// with a cookie that ends it. Both must come from the hub's own origin.
// Refusals are JSON {"message": "..."} with 400, 401, 403, 405, 413 or
// 429.
func (a *Auth) ServeSession(w http.ResponseWriter, r *http.Request) {
	if err := a.sameOrigin.Check(r); err != nil {
		writeMessage(w, http.StatusForbidden, errCrossOrigin)
		return
	}
	switch r.Method {
	case http.MethodDelete:
		http.SetCookie(w, ended())
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost:
		var in struct {
			Token string `json:"token"`
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSignInBytes))
		if errors.As(err, new(*http.MaxBytesError)) {
			writeMessage(w, http.StatusRequestEntityTooLarge, fmt.Errorf("sign-in: body over %d bytes", maxSignInBytes))
			return
		}
		if err != nil {
			writeMessage(w, http.StatusBadRequest, fmt.Errorf("sign-in: read the body: %w", err))
			return
		}
		if err := json.Unmarshal(body, &in); err != nil || in.Token == "" {
			writeMessage(w, http.StatusBadRequest, errors.New(`sign-in: want the JSON {"token": "..."}`))
			return
		}
		t, ok := a.tokens.valued(in.Token)
		if !ok {
			if !a.limiter.allow(remoteIP(r)) {
				writeMessage(w, http.StatusTooManyRequests, errTooManyWrongs)
				return
			}
			writeMessage(w, http.StatusUnauthorized, errWrongToken)
			return
		}
		http.SetCookie(w, a.sessions.issue(t))
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "POST, DELETE")
		writeMessage(w, http.StatusMethodNotAllowed, errors.New("sign in with POST, out with DELETE"))
	}
}

func writeMessage(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
}
