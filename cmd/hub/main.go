// Command hub watches Git and publishes signed desired state for every
// cluster of the fleet over NATS JetStream.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/flotilla-dev/flotilla/hub"
	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/telemetry"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		initShared(os.Args[2:])
		return
	}
	configPath := flag.String("config", "hub.yaml", "hub configuration file (docs/hub-config.md)")
	dataDir := flag.String("data-dir", "", "override dataDir: signing key, Git mirrors, embedded NATS storage")
	listen := flag.String("listen", "", "override listen: address of the API and webhook server")
	natsURL := flag.String("nats-url", "", "override nats.url: use an external NATS instead of the embedded one")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(*configPath, *dataDir, *listen, *natsURL, log); err != nil {
		log.Error("hub failed", "error", err)
		os.Exit(1)
	}
}

func run(configPath, dataDir, listen, natsURL string, log *slog.Logger) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	if listen != "" {
		cfg.Listen = listen
	}
	if natsURL != "" {
		cfg.NATS.URL = natsURL
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTracing, err := telemetry.Setup(ctx, "flotilla-hub")
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer shutdownTracing(context.Background())

	h, err := hub.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer h.Close()
	log.Info("hub ready: add clusters with `flotilla cluster add`", "nats", h.NATSURL(), "ca", h.CAFile())
	return h.Run(ctx)
}

// initShared creates what hub replicas share (the signing key, the NATS
// operator and accounts, the private CA) in a data directory, to be copied
// into every replica's (docs/operations.md, "Running it highly available").
func initShared(args []string) {
	fs := flag.NewFlagSet("hub init", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "directory to create the shared keys and CA in (required)")
	_ = fs.Parse(args)
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "hub init: -data-dir is required")
		os.Exit(2)
	}
	files, err := hub.Init(*dataDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub init:", err)
		os.Exit(1)
	}
	fmt.Println("Copy these into the dataDir of every hub replica (same relative paths), and keep them secret:")
	for _, f := range files {
		fmt.Println("  " + f)
	}
}
