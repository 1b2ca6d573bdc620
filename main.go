// Command civicbase turns committed Postgres row changes into stored events
// and serves them over HTTP.
//
// Usage:
//
//	civicbase serve      run the service (the default)
//	civicbase dev        run against a throwaway local Postgres with a demo schema
//	civicbase migrate    apply schema migrations and exit
//	civicbase status     print the slot, event store and webhook queue state
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cmd := "serve"
	args := os.Args[1:]
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serveCommand(ctx, log)
	case "dev":
		err = devCommand(ctx, log, args)
	case "bench":
		err = benchCommand(ctx, log, args)
	case "migrate":
		err = migrateCommand(ctx, log)
	case "status":
		err = statusCommand(ctx, os.Stdout, os.Getenv)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q; run `civicbase help` for the list", cmd)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("civicbase stopped", "err", err)
		os.Exit(1)
	}
}

const usage = `civicbase turns committed Postgres row changes into events.

Commands:
  serve     run the service (default); configured by environment variables
  dev       start a throwaway local Postgres with a demo schema and run the service
            (--keep keeps the cluster folder after Ctrl-C)
  migrate   apply schema migrations to DATABASE_URL and exit
  status    print the slot, event store and webhook queue state of DATABASE_URL
  bench     run a benchmark on a throwaway cluster: capture, webhooks or realtime

Environment:
  DATABASE_URL            database to watch (required)
  CIVICBASE_ADMIN_TOKEN   bearer token for the API, at least 16 characters (required)
  CIVICBASE_ADDR          listen address (default :8080)
  CIVICBASE_CONFIG        YAML file: tables, models, semantic events, slot, retention
  CIVICBASE_DEV           true allows loopback and private webhook URLs
`
