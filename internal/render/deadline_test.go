package render

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// waitForAbandoned polls until no render runs past its deadline, so that
// no test leaves one to the next.
func waitForAbandoned(t *testing.T, timeout time.Duration) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		abandoned.Lock()
		n := abandoned.total
		abandoned.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%d renders still run past their deadline after %s", n, timeout)
		case <-tick.C:
		}
	}
}

func TestRenderHelmLoopFailsAtItsDeadline(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"charts/loop/Chart.yaml": "apiVersion: v2\nname: loop\nversion: 0.1.0\n",
		// 2·10⁷ empty iterations: about a second of work, far past the
		// limit below, and over soon enough for the cleanup to wait for it.
		"charts/loop/templates/loop.yaml": "{{- range until 2000 }}{{ range until 10000 }}{{ end }}{{ end }}\n" + configMap,
	})
	t.Cleanup(func() { waitForAbandoned(t, 2*time.Minute) })
	loop := Request{Root: root, Path: "charts/loop", Timeout: 100 * time.Millisecond}

	_, err := Render(context.Background(), loop)
	if want := "render charts/loop: Helm render did not finish within 100ms"; !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want context.DeadlineExceeded and %q", err, want)
	}
	if _, err := Render(context.Background(), loop); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "still running") {
		t.Errorf("the same request while its render still runs: error = %v, want it refused at once", err)
	}
	if _, err := Render(context.Background(), Request{Root: fixture, Path: "charts/worker-service"}); err != nil {
		t.Errorf("another application after the timeout: %v", err)
	}
}

func TestRunBoundedCountsALateRenderUntilItEnds(t *testing.T) {
	release := make(chan struct{})
	late := func() (*Result, error) { <-release; return &Result{}, nil }
	quick := func() (*Result, error) { return &Result{}, nil }
	req := Request{Root: t.TempDir(), Path: "slow", Timeout: time.Millisecond}

	_, err := runBounded(context.Background(), req, KindDirectory, late)
	if want := "render slow: Directory render did not finish within 1ms"; !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want context.DeadlineExceeded and %q", err, want)
	}
	if _, err := runBounded(context.Background(), req, KindDirectory, quick); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "still running") {
		t.Errorf("the same request while its render still runs: error = %v, want it refused", err)
	}
	other := req
	other.Path = "other"
	if _, err := runBounded(context.Background(), other, KindDirectory, quick); err != nil {
		t.Errorf("another request: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	other.Timeout = time.Hour
	if _, err := runBounded(ctx, other, KindDirectory, late); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: error = %v, want context.Canceled", err)
	}

	close(release)
	waitForAbandoned(t, 10*time.Second)
	if _, err := runBounded(context.Background(), req, KindDirectory, quick); err != nil {
		t.Errorf("the same request once its late render ended: %v", err)
	}
}

func TestRunBoundedRefusesPastMaxAbandoned(t *testing.T) {
	release := make(chan struct{})
	late := func() (*Result, error) { <-release; return &Result{}, nil }
	for i := range maxAbandoned {
		req := Request{Root: t.TempDir(), Path: fmt.Sprint("slow-", i), Timeout: time.Millisecond}
		if _, err := runBounded(context.Background(), req, KindHelm, late); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("render %d: error = %v, want context.DeadlineExceeded", i, err)
		}
	}
	req := Request{Root: t.TempDir(), Path: "next"}
	_, err := runBounded(context.Background(), req, KindHelm, func() (*Result, error) { return &Result{}, nil })
	if want := fmt.Sprintf("%d renders passed their deadline and are still running", maxAbandoned); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want %q", err, want)
	}
	close(release)
	waitForAbandoned(t, 10*time.Second)
	if _, err := runBounded(context.Background(), req, KindHelm, func() (*Result, error) { return &Result{}, nil }); err != nil {
		t.Errorf("once the late renders ended: %v", err)
	}
}
