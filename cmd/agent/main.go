// Command agent runs in one cluster: it pulls the desired state the hub
// signed for it over NATS and applies it with server-side apply.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/flotilla-dev/flotilla/agent"
	"github.com/flotilla-dev/flotilla/internal/telemetry"
)

func main() {
	opts := agent.DefaultOptions()
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTracing, err := telemetry.Setup(ctx, "flotilla-agent")
	if err != nil {
		log.Error("tracing", "error", err)
		os.Exit(1)
	}
	defer shutdownTracing(context.Background())
	if err := agent.Run(ctx, opts, log); err != nil {
		log.Error("agent failed", "error", err)
		os.Exit(1)
	}
}
