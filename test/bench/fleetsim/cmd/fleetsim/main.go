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
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/flotilla-dev/flotilla/test/bench/fleetsim"
)

func main() {
	bundles := flag.String("bundles", "", "directory of credentials bundles, one per subdirectory")
	cache := flag.String("cache-dir", os.TempDir(), "where each agent caches its artifacts")
	level := slog.LevelWarn
	flag.TextVar(&level, "log-level", level, "the agents' log level: debug, info, warn or error")
	shard := flag.Int("shard", 0, "run only the bundles whose index modulo -shards is this")
	shards := flag.Int("shards", 1, "how many processes share the bundles")
	profiles := flag.String("profile-dir", "", "on SIGUSR1, write a 10 s CPU profile of the process here (for diagnosis)")
	flag.Parse()
	all, err := fleetsim.Bundles(*bundles)
	if *shards < 1 || *shard < 0 || *shard >= *shards {
		fmt.Fprintln(os.Stderr, "fleetsim: -shard must be in [0, -shards)")
		os.Exit(2)
	}
	var dirs []string
	for i, dir := range all {
		if i%*shards == *shard {
			dirs = append(dirs, dir)
		}
	}
	if err != nil || len(dirs) == 0 {
		fmt.Fprintln(os.Stderr, "fleetsim: -bundles: no bundles:", err)
		os.Exit(2)
	}
	raiseFileLimit(len(dirs))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	log.Warn("fleetsim: starting agents", "agents", len(dirs))
	if *profiles != "" {
		go profileOnSignal(ctx, filepath.Join(*profiles, fmt.Sprintf("fleetsim-%d", *shard)), log)
	}
	fleetsim.Run(ctx, dirs, *cache, log)
}

// profileOnSignal writes a 10-second CPU profile to prefix-<n>.pprof at
// each SIGUSR1, until ctx ends.
func profileOnSignal(ctx context.Context, prefix string, log *slog.Logger) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-usr1:
		}
		if err := profileCPU(fmt.Sprintf("%s-%d.pprof", prefix, n), 10*time.Second); err != nil {
			log.Error("fleetsim: CPU profile", "error", err)
		}
	}
}

func profileCPU(path string, d time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	time.Sleep(d)
	pprof.StopCPUProfile()
	return f.Close()
}

// raiseFileLimit lets the process open files for agents agents: each holds
// a connection and, while it syncs, a few files, and a reconnect storm
// holds old and new connections at once. 10,000 agents passed the 20,000
// a machine gives a process by default (Go raises only the soft limit to
// the hard one); a real agent has a process of its own. Raising the hard
// limit needs CAP_SYS_RESOURCE; without it the limit stays, so the
// benchmark runs at most 5,000 agents a process (-shards).
func raiseFileLimit(agents int) {
	want := uint64(8*agents + 1024)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= want {
		return
	}
	lim.Cur, lim.Max = want, max(want, lim.Max)
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
