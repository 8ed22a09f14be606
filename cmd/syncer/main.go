// Command syncer is the only Tokka process that can open a sealed key. It
// syncs due connections once ("syncer once", for cron), on a schedule
// ("syncer run"), and prints the api's public key ("syncer public-key").
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	limitMemory(os.Getenv)
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "syncer:", err)
		os.Exit(1)
	}
}
