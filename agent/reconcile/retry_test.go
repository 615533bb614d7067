package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/internal/render"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

func TestRetryAfterFollowsArgoCD(t *testing.T) {
	story := &flotillav1.Retry{Limit: 5, Backoff: &flotillav1.Backoff{Duration: "5s", Factor: 2, MaxDuration: "3m"}}
	for _, tc := range []struct {
		name    string
		policy  *flotillav1.Retry
		attempt int64
		want    time.Duration
	}{
		{"no policy: no retry", nil, 0, 0},
		{"limit 0: no retry", &flotillav1.Retry{}, 0, 0},
		{"first retry waits duration", story, 0, 5 * time.Second},
		{"second waits duration×factor", story, 1, 10 * time.Second},
		{"fifth", story, 4, 80 * time.Second},
		{"limit reached", story, 5, 0},
		{"capped at maxDuration", &flotillav1.Retry{Limit: 10, Backoff: &flotillav1.Backoff{Duration: "1m", Factor: 2, MaxDuration: "3m"}}, 3, 3 * time.Minute},
		{"negative limit retries forever", &flotillav1.Retry{Limit: -1}, 100, 3 * time.Minute},
		{"defaults 5s/2/3m", &flotillav1.Retry{Limit: 3}, 1, 10 * time.Second},
		{"bare number is seconds", &flotillav1.Retry{Limit: 3, Backoff: &flotillav1.Backoff{Duration: "7"}}, 0, 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.policy, tc.attempt); got != tc.want {
				t.Errorf("retryAfter(attempt %d) = %s, want %s", tc.attempt, got, tc.want)
			}
		})
	}
}

func TestTransientRetryAfterIsSpreadAndBounded(t *testing.T) {
	for attempt := range int64(12) {
		step := min(transientRetryInitial<<min(attempt, 6), transientRetryMax)
		seen := map[time.Duration]bool{}
		for range 50 {
			got := transientRetryAfter(attempt)
			if got < step/2 || got >= step {
				t.Fatalf("transientRetryAfter(%d) = %s, want in [%s, %s)", attempt, got, step/2, step)
			}
			seen[got] = true
		}
		if len(seen) < 2 {
			t.Errorf("transientRetryAfter(%d) gave one value in 50 draws: no spread", attempt)
		}
	}
}

func TestTransientErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fetchError{errors.New("artifact sha256:aa: context deadline exceeded")}, true},
		{fmt.Errorf("render: %w", &render.Error{Path: "charts/web", Reason: "4 renders passed their deadline", Err: render.ErrBusy}), true},
		{&render.Error{Path: "charts/loop", Reason: "Helm render did not finish within 30s", Err: context.DeadlineExceeded}, true},
		{&render.Error{Path: "charts/web", File: "values.yaml", Reason: "yaml: line 3: did not find expected key"}, false},
		// The fleet simulator's 10,000 agents in one process met this.
		{&render.Error{Path: "sim/app-0", Reason: "read directory", Err: &fs.PathError{Op: "open", Path: "sim/app-0", Err: syscall.EMFILE}}, true},
		{fmt.Errorf("write inventory: %w", &fs.PathError{Op: "open", Path: "inventory", Err: syscall.ENFILE}), true},
		{errors.New("apply: admission webhook denied"), false},
		{nil, false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}
