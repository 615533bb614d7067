package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The refused requests a remote IP may make: failedAuthBurst at once, then
// failedAuthRate a second. A person who mistypes a token never meets the
// limit; a script that guesses tokens does.
const failedAuthRate rate.Limit = 10

// failedAuthBurst: see failedAuthRate.
const failedAuthBurst = 20

// minSweep is how many remote IPs failureLimiter tracks before it first
// forgets the idle ones.
const minSweep = 1024

// failureLimiter is a token bucket per remote IP for the requests
// Auth refuses.
type failureLimiter struct {
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	// sweepAt is the number of buckets at which the next new IP first
	// sweeps the idle ones out.
	sweepAt int
}

func newFailureLimiter(now func() time.Time) *failureLimiter {
	return &failureLimiter{now: now, buckets: map[string]*rate.Limiter{}, sweepAt: minSweep}
}

// allow counts a refused request from ip and reports whether ip is still
// within its limit.
func (l *failureLimiter) allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	bucket, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= l.sweepAt {
			l.sweep(now)
		}
		bucket = rate.NewLimiter(failedAuthRate, failedAuthBurst)
		l.buckets[ip] = bucket
	}
	return bucket.AllowN(now, 1)
}

// sweep forgets the buckets that have filled up again, which a new one
// would equal, and sweeps next once the rest have doubled. So the map
// stays within minSweep or twice the IPs refused in the two seconds (the
// time an empty bucket takes to fill) before the last sweep, however many
// addresses a caller cycles through, for a constant cost per new IP on
// average.
func (l *failureLimiter) sweep(now time.Time) {
	for ip, bucket := range l.buckets {
		if bucket.TokensAt(now) >= failedAuthBurst {
			delete(l.buckets, ip)
		}
	}
	l.sweepAt = max(minSweep, 2*len(l.buckets))
}
