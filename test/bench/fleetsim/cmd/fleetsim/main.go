// Command fleetsim runs a fleet of simulated agents (package fleetsim) for
// the scale benchmarks, one per credentials bundle under -bundles, until
// it is stopped.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/flotilla-dev/flotilla/test/bench/fleetsim"
)

func main() {
	bundles := flag.String("bundles", "", "directory of credentials bundles, one per subdirectory")
	cache := flag.String("cache-dir", os.TempDir(), "where each agent caches its artifacts")
	flag.Parse()
	dirs, err := fleetsim.Bundles(*bundles)
	if err != nil || len(dirs) == 0 {
		fmt.Fprintln(os.Stderr, "fleetsim: -bundles: no bundles:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	log.Warn("fleetsim: starting agents", "agents", len(dirs))
	fleetsim.Run(ctx, dirs, *cache, log)
}
