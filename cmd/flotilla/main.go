// Command flotilla is the operator CLI of a Flotilla fleet.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/flotilla-dev/flotilla/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := cli.NewRoot(os.Stdout).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla:", err)
		stop()
		os.Exit(cli.ExitCode(err))
	}
}
