package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

// newDispatcher builds the webhook dispatcher from the configuration.
func newDispatcher(cfg config.Config, st *store.Store, cipher *delivery.Cipher, metrics *delivery.Metrics, log *slog.Logger) *delivery.Dispatcher {
	w := cfg.Webhooks
	return delivery.NewDispatcher(delivery.Config{
		Workers: w.Workers, PerEndpoint: w.PerEndpoint, ConnectTimeout: w.ConnectTimeout, Timeout: w.Timeout, Lease: w.Lease,
		Schedule: w.Schedule, DisableAfter: w.DisableAfter, ShutdownTimeout: cfg.ShutdownTimeout, AllowPrivate: cfg.Dev, Metrics: metrics,
	}, st, cipher, log)
}

// catalog returns the function that lists the watched models and the
// configured semantic event names, which webhook subscriptions are checked
// against. Without a table list every table of schema public is watched, so
// the models are read from the catalog each time.
func catalog(cfg config.Config, pool *pgxpool.Pool) func(context.Context) ([]string, []string, error) {
	var models, semantic []string
	for _, t := range cfg.Tables {
		models = append(models, t.Model)
		for _, e := range t.Events {
			if !slices.Contains(semantic, e.Name) {
				semantic = append(semantic, e.Name)
			}
		}
	}
	return func(ctx context.Context) ([]string, []string, error) {
		if len(cfg.Tables) > 0 {
			return models, semantic, nil
		}
		rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`)
		if err != nil {
			return nil, nil, fmt.Errorf("listing tables of schema public: %w", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, nil, fmt.Errorf("listing tables of schema public: %w", err)
		}
		all := make([]string, len(names))
		for i, n := range names {
			all[i] = config.ModelName(n)
		}
		return all, nil, nil
	}
}
