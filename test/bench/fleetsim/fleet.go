package fleetsim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/flotilla-dev/flotilla/agent"
)

// Run runs one simulated agent per credentials bundle in dirs (each a
// directory `flotilla cluster add --out` wrote), each with a Recorder for
// its cluster and a cache directory under cacheDir, until ctx ends. An
// agent that stops with an error is logged; the others go on. The
// simulated clusters' applications must not hold Argo Rollouts (a
// Recorder has no rollouts controller).
func Run(ctx context.Context, dirs []string, cacheDir string, log *slog.Logger) {
	var wg sync.WaitGroup
	for i, dir := range dirs {
		opts := agent.DefaultOptions()
		opts.Credentials, opts.CacheDir = dir, filepath.Join(cacheDir, fmt.Sprint(i))
		opts.MetricsAddr, opts.RolloutsController = "", false
		kube := agent.Kube{Cluster: NewRecorder(), Inventories: NewInventories(), Version: "v1.37.2"}
		wg.Go(func() {
			if err := agent.Serve(ctx, opts, kube, log.With("agent", i)); err != nil && ctx.Err() == nil {
				log.Error("simulated agent stopped", "credentials", dir, "error", err)
			}
		})
	}
	wg.Wait()
}

// Bundles lists the credentials bundles under dir, one per subdirectory.
func Bundles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}
