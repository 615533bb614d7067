package render

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// DefaultTimeout bounds a render whose Request sets no Timeout. Real charts
// and kustomizations render in well under a second; 30 s is far past any of
// them, yet short enough that a template that loops costs its application
// one sync, not the hub a reconcile.
const DefaultTimeout = 30 * time.Second

// ErrBusy is why a render was refused without starting: renders that
// passed their deadline still run (admit). It passes when they end, so a
// caller can try again later.
var ErrBusy = errors.New("render refused while renders that passed their deadline still run")

// maxAbandoned bounds the renders that passed their deadline and still run.
// Neither Helm's engine nor kustomize takes a context, so such a render keeps
// its goroutine, a core and its memory until it ends by itself (one that
// never ends keeps them until the process restarts). Past this many, Render
// refuses to start another rather than let them pile up.
const maxAbandoned = 4

// abandoned counts the renders that passed their deadline and still run, by
// requestKey: the same request is refused at once while its earlier render
// runs, so a looping chart re-rendered at every poll holds one slot, not one
// per poll.
var abandoned = struct {
	sync.Mutex
	byKey map[string]int
	total int
}{byKey: map[string]int{}}

type outcome struct {
	res *Result
	err error
}

// runBounded runs render in its own goroutine and waits for it until ctx ends
// or the request's timeout passes. Past the timeout it returns an *Error
// naming the kind and the limit, wrapping context.DeadlineExceeded; the
// goroutine runs on, counted in abandoned, until it ends by itself.
func runBounded(ctx context.Context, req Request, kind Kind, render func() (*Result, error)) (*Result, error) {
	timeout := cmp.Or(req.Timeout, DefaultTimeout)
	key := requestKey(req)
	if err := admit(key); err != nil {
		return nil, &Error{Path: req.Path, Reason: err.Error(), Err: ErrBusy}
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := render()
		done <- outcome{res, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		abandon(key, done)
		return nil, ctx.Err()
	case <-timer.C:
		abandon(key, done)
		return nil, &Error{Path: req.Path, Reason: fmt.Sprintf("%s render did not finish within %s", kind, timeout), Err: context.DeadlineExceeded}
	}
}

// admit refuses a render while the same request's earlier render, or
// maxAbandoned renders, run past their deadline.
func admit(key string) error {
	abandoned.Lock()
	defer abandoned.Unlock()
	switch {
	case abandoned.byKey[key] > 0:
		return errors.New("an earlier render of this source passed its deadline and is still running")
	case abandoned.total >= maxAbandoned:
		return fmt.Errorf("%d renders passed their deadline and are still running; none starts until one ends", abandoned.total)
	}
	return nil
}

// abandon counts a render that passed its deadline until it sends its
// outcome.
func abandon(key string, done <-chan outcome) {
	abandoned.Lock()
	abandoned.byKey[key]++
	abandoned.total++
	abandoned.Unlock()
	go func() {
		<-done
		abandoned.Lock()
		defer abandoned.Unlock()
		if abandoned.byKey[key]--; abandoned.byKey[key] == 0 {
			delete(abandoned.byKey, key)
		}
		abandoned.total--
	}()
}

// requestKey identifies a request by everything its render depends on.
func requestKey(req Request) string {
	spec, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req.Spec)
	return strings.Join([]string{req.Root, req.Path, string(spec), req.ReleaseName, req.Namespace, req.KubeVersion, strings.Join(req.APIVersions, ",")}, "\x00")
}
