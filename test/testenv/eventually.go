package testenv

import (
	"context"
	"time"
)

// Eventually polls condition every 100 ms until it returns nil or timeout
// passes, then fails the test with the last error. It never sleeps longer
// than needed.
func Eventually(t TB, timeout time.Duration, condition func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		if err = condition(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %v", timeout, err)
		case <-tick.C:
		}
	}
}
