package reconcile

import (
	"context"
	"errors"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/flotilla-dev/flotilla/internal/appspec"
	"github.com/flotilla-dev/flotilla/internal/render"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// Argo CD's defaults for syncPolicy.retry.backoff.
const (
	defaultRetryDuration    = 5 * time.Second
	defaultRetryFactor      = 2
	defaultRetryMaxDuration = 3 * time.Minute
)

// retryAfter is how long to wait before retrying a sync whose attempt
// (0-based: the count of earlier failures) failed, or 0 for no retry. It
// follows Argo CD: no retry without syncPolicy.retry or with limit 0;
// unlimited retries with a negative limit; the n-th retry waits
// duration × factor^(n-1), capped at maxDuration.
func retryAfter(policy *flotillav1.Retry, attempt int64) time.Duration {
	if policy == nil || policy.GetLimit() == 0 || (policy.GetLimit() > 0 && attempt >= policy.GetLimit()) {
		return 0
	}
	b := backoffFor(policy.GetBackoff())
	var next time.Duration
	for range attempt + 1 {
		next = b.NextBackOff()
	}
	return next
}

// backoffFor is syncPolicy.retry.backoff as an exponential backoff without
// jitter. The hub validated the durations; a bad one falls back to the
// default.
func backoffFor(bo *flotillav1.Backoff) *backoff.ExponentialBackOff {
	duration, maxDuration, factor := defaultRetryDuration, defaultRetryMaxDuration, float64(defaultRetryFactor)
	if d, err := appspec.ParseArgoDuration(bo.GetDuration()); err == nil && d > 0 {
		duration = d
	}
	if d, err := appspec.ParseArgoDuration(bo.GetMaxDuration()); err == nil && d > 0 {
		maxDuration = d
	}
	if bo.GetFactor() > 0 {
		factor = float64(bo.GetFactor())
	}
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(duration), backoff.WithMultiplier(factor), backoff.WithMaxInterval(maxDuration),
		backoff.WithRandomizationFactor(0), backoff.WithMaxElapsedTime(0))
	b.Reset()
	return b
}

// Transient retries: 1 s at first, doubling up to a minute.
const (
	transientRetryInitial = time.Second
	transientRetryMax     = time.Minute
)

// transient reports whether err may pass by itself, whatever the
// application: its artifact could not be fetched (a fetchError), its
// render passed its deadline (an agent short of CPU; a template that
// loops is refused at once while its earlier render still runs, so
// trying again costs nothing), or its render was refused while renders
// that passed their deadline still run (render.ErrBusy), or the agent's
// process or host ran out of file descriptors (EMFILE, ENFILE: files and
// connections close again). Argo CD, too, tries a comparison that failed
// again at the next refresh.
func transient(err error) bool {
	var renderErr *render.Error
	return errors.As(err, new(fetchError)) || errors.Is(err, render.ErrBusy) ||
		errors.As(err, &renderErr) && errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// transientRetryAfter is how long to wait before trying again a desired
// state whose sync failed transiently, after attempt earlier failures.
// Unlike retryAfter it does not depend on the application's retry policy:
// Argo CD's policy is about syncs that failed on the cluster, and a desired
// state the agent could not even read or render must not wait for the
// next resync. Each wait is drawn from the upper half of its step, so that
// a fleet whose fetches failed together (a hub overloaded by every agent
// at once) does not try again together.
func transientRetryAfter(attempt int64) time.Duration {
	step := min(transientRetryInitial<<min(attempt, 6), transientRetryMax)
	return step/2 + rand.N(step/2)
}
