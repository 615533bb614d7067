package flotillatest

import (
	"context"
	"log/slog"

	"github.com/flotilla-dev/flotilla/agent/rollouts"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// InstallRolloutsCRDs installs the argoproj.io CRDs the agent installs
// (Rollout, AnalysisTemplate, AnalysisRun, ...) and waits until they are
// served.
func InstallRolloutsCRDs(t testenv.TB, c *testenv.Cluster) {
	t.Helper()
	if _, err := rollouts.EnsureCRDs(t.Context(), c.Dynamic); err != nil {
		t.Fatalf("flotillatest: cluster %s: rollouts CRDs: %v", c.Name, err)
	}
}

// StartRolloutsController runs the agent's rollouts controller alone on c
// with opts until the test ends. The returned function stops it sooner, as
// an agent dying would; calling it again does nothing.
func StartRolloutsController(t testenv.TB, c *testenv.Cluster, opts rollouts.Options, log *slog.Logger) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ctrl := rollouts.NewController(c.Dynamic, opts, log)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ctrl.Run(ctx); err != nil {
			t.Errorf("flotillatest: rollouts controller on %s: %v", c.Name, err)
		}
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}
