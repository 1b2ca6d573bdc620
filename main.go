// Command civicbase turns committed Postgres row changes into stored events
// and serves them over HTTP.
//
// Usage:
//
//	civicbase serve      run the service (the default)
//	civicbase dev        run against a throwaway local Postgres with a demo schema
//	civicbase migrate    apply schema migrations and exit
//	civicbase status     print the slot, event store and webhook queue state
//	civicbase recreate-slot  accept a lost slot's gap so the service creates a new one
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	log, err := newLogger(os.Stderr, os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "civicbase: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a graceful shutdown. Unregistering then
	// restores the default action, so a second signal ends the process at
	// once.
	context.AfterFunc(ctx, stop)

	cmd := "serve"
	args := os.Args[1:]
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
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
	case "recreate-slot":
		err = recreateSlotCommand(ctx, log, os.Stdout, os.Getenv)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q; run `civicbase help` for the list", cmd)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("civicbase stopped", "err", err)
		stop()
		os.Exit(1)
	}
}

// newLogger builds the process logger from CIVICBASE_LOG_FORMAT (text or
// json, default text) and CIVICBASE_LOG_LEVEL (debug, info, warn or error,
// default info).
func newLogger(w io.Writer, getenv func(string) string) (*slog.Logger, error) {
	var level slog.Level
	switch v := strings.ToLower(getenv("CIVICBASE_LOG_LEVEL")); v {
	case "debug":
		level = slog.LevelDebug
	case "", "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("CIVICBASE_LOG_LEVEL=%q is not a log level; use debug, info, warn or error", getenv("CIVICBASE_LOG_LEVEL"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch v := getenv("CIVICBASE_LOG_FORMAT"); strings.ToLower(v) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("CIVICBASE_LOG_FORMAT=%q is not a log format; use text or json", v)
	}
}

const usage = `civicbase turns committed Postgres row changes into events.

Commands:
  serve     run the service (default); configured by environment variables
  dev       start a throwaway local Postgres with a demo schema and run the service
            (--keep keeps the cluster folder after Ctrl-C)
  migrate   apply schema migrations to DATABASE_URL and exit
  status    print the slot, event store and webhook queue state of DATABASE_URL
  recreate-slot
            accept the loss of a dropped or invalidated replication slot: record the
            gap, drop the lost slot, and let the service create a new one
  bench     run a benchmark on a throwaway cluster: capture, webhooks, realtime or soak

Environment:
  DATABASE_URL            database to watch (required)
  CIVICBASE_ADMIN_TOKEN   bearer token for the API, at least 16 characters (required)
  CIVICBASE_ADDR          listen address (default :8080)
  CIVICBASE_CONFIG        YAML file: tables, models, semantic events, slot, retention
  CIVICBASE_DEV           true allows loopback and private webhook URLs
  CIVICBASE_LOG_FORMAT    log format on stderr: text (default) or json
  CIVICBASE_LOG_LEVEL     minimum log level: debug, info (default), warn or error
`
