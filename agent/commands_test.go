package agent

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-dev/flotilla/agent/reconcile"
	"github.com/flotilla-dev/flotilla/internal/signing"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func TestCheckCommandRefusesOtherClustersAndReplays(t *testing.T) {
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		cluster string
		issued  time.Time
		want    string
	}{
		{"fresh", "prod-eu", now.Add(-time.Second), ""},
		{"slightly ahead", "prod-eu", now.Add(30 * time.Second), ""},
		{"another cluster", "prod-us", now, `addressed to cluster "prod-us"`},
		{"replayed", "prod-eu", now.Add(-2 * time.Minute), "replayed"},
		{"far future", "prod-eu", now.Add(5 * time.Minute), "replayed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCommand(&flotillav1.AgentCommand{Cluster: tc.cluster, IssuedAt: timestamppb.New(tc.issued)}, "prod-eu", now)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// nonceOf is a nonce of the hub's size made of b.
func nonceOf(b byte) []byte { return bytes.Repeat([]byte{b}, 16) }

// TestCommandsAreCarriedOutOnce sends signed commands through the agent's
// handler as the hub would, and as someone who captured them would again.
func TestCommandsAreCarriedOutOnce(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer := signing.NewSigner(key)
	clock := &fakeClock{now: time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// A syncer that has no application yet: a command it carries out
	// answers "no desired state received yet", one the guard refuses
	// never reaches it.
	syncer := reconcile.New(reconcile.Options{Cluster: "prod-eu"}, log, reconcile.Dependencies{})
	handle := handleCommands(newCommandGuard("prod-eu", clock.Now), signing.NewVerifier(pub), syncer, nil, log)
	sign := func(nonce []byte, issued time.Time) *flotillav1.SignedAgentCommand {
		env, err := signer.SignCommand(&flotillav1.AgentCommand{SchemaVersion: 1, Cluster: "prod-eu", App: "api", Actor: "alice",
			IssuedAt: timestamppb.New(issued), Nonce: nonce, Command: &flotillav1.AgentCommand_Sync{Sync: &flotillav1.SyncCommand{}}})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	carriedOut := "api: no desired state received yet"
	started := clock.now
	captured := sign(nonceOf(1), started)
	for _, tc := range []struct {
		name    string
		advance time.Duration // the clock moves on by advance first
		env     *flotillav1.SignedAgentCommand
		want    string
	}{
		{"a command is carried out", 0, captured, carriedOut},
		{"a command issued before the agent started is refused", time.Second, sign(nonceOf(2), started.Add(-time.Second)), "command refused: issued at 2026-11-25T01:59:59Z, before this agent started"},
		{"the same command again is refused", 0, captured, "command refused: nonce carried out before: replayed"},
		{"and still is late in its minute", 58 * time.Second, captured, "command refused: nonce carried out before: replayed"},
		{"a new command is carried out", 0, sign(nonceOf(3), started.Add(59*time.Second)), carriedOut},
		{"a command without a nonce is refused", 0, sign(nil, started.Add(59*time.Second)), "command refused: no nonce"},
		{"a command with a short nonce is refused", 0, sign([]byte("short"), started.Add(59*time.Second)), "command refused: nonce of 5 bytes, want 16 or more"},
		{"past its minute, the captured command is refused by its time", 2 * time.Second, captured, "command refused: issued at 2026-11-25T02:00:00Z, more than 1m0s from now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock.now = clock.now.Add(tc.advance)
			if got := handle(t.Context(), tc.env).GetError(); !strings.Contains(got, tc.want) {
				t.Errorf("reply error %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCommandGuardForgetsExpiredNonces: the guard holds the nonces of the
// commands whose time has not run out, and no others.
func TestCommandGuardForgetsExpiredNonces(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)}
	guard := newCommandGuard("prod-eu", clock.Now)
	admit := func(nonce byte) error {
		return guard.admit(&flotillav1.AgentCommand{Cluster: "prod-eu", IssuedAt: timestamppb.New(clock.now), Nonce: nonceOf(nonce)})
	}
	for n := range byte(100) {
		if err := admit(n); err != nil {
			t.Fatalf("nonce %d: %v", n, err)
		}
	}
	clock.now = clock.now.Add(30 * time.Second)
	if err := admit(100); err != nil {
		t.Fatal(err)
	}
	if got := len(guard.nonces); got != 101 {
		t.Errorf("%d nonces remembered within the minute, want 101", got)
	}
	// The first hundred expire a minute after they were issued; the last
	// one is still within its minute, and still refused when repeated.
	clock.now = clock.now.Add(31 * time.Second)
	if err := admit(101); err != nil {
		t.Fatal(err)
	}
	if got := len(guard.nonces); got != 2 {
		t.Errorf("%d nonces remembered after the first hundred expired, want 2", got)
	}
	if err := admit(100); err == nil || !strings.Contains(err.Error(), "replayed") {
		t.Errorf("nonce 100 again: %v, want refused as replayed", err)
	}
}
