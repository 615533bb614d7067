package api

import (
	"strings"
	"testing"
	"time"
)

// FuzzSessionCookie: whatever a browser (or anyone) sends as the session
// cookie, checking it never panics, and accepts nothing but the session
// the hub issued: its token and its expiry (an encoding of the same bytes
// spelled differently carries the same MAC).
func FuzzSessionCookie(f *testing.F) {
	now := time.Date(2026, time.March, 14, 9, 0, 0, 0, time.UTC)
	tokens := newTokenSet([]Token{{Name: "ops", Value: "secret", Role: Viewer}, {Name: "root", Value: "other", Role: Admin}})
	s := newSessions([]byte("0123456789abcdef0123456789abcdef"), tokens, func() time.Time { return now })
	issued := s.issue(Token{Name: "ops", Value: "secret", Role: Viewer}).Value
	_, issuedEnd, err := s.check(issued)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{issued, "", "v1", "v1...", "v1.b3Bz.1.x", strings.Replace(issued, "b3Bz", "cm9vdA", 1), issued + "=", "v2" + issued[2:]} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		tok, end, err := s.check(value)
		if err == nil && (tok.Name != "ops" || !end.Equal(issuedEnd)) {
			t.Fatalf("accepted %q as %q's session until %s; the hub issued %q's until %s", value, tok.Name, end, "ops", issuedEnd)
		}
	})
}
