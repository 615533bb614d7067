package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	opts := DefaultOptions()
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	built, err := Build(ctx, opts, log)
	if err != nil {
		log.Error("images failed", "error", err)
		os.Exit(1)
	}
	fmt.Printf("OCI image layout %s:\n", opts.Out)
	for _, b := range built {
		fmt.Printf("%s\t%s\n", b.Ref, b.Index)
		for _, p := range b.Platforms {
			fmt.Printf("  %-15s %s  %5.1f MB  SBOM %s\n", p.Platform, p.Digest, float64(p.Size)/1e6, p.SBOM)
		}
	}
}
