package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/httpapi"
	"github.com/civicbase/civicbase/hub"
	"github.com/civicbase/civicbase/internal/authlimit"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

// pruneInterval is how often stored events past their retention are deleted.
const pruneInterval = 10 * time.Minute

func serveCommand(ctx context.Context, log *slog.Logger) error {
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return serve(ctx, cfg, log, nil)
}

func migrateCommand(ctx context.Context, log *slog.Logger) error {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return errors.New("DATABASE_URL is not set; set it to the database to migrate")
	}
	pool, err := openPool(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	return sql.Migrate(ctx, pool, log)
}

func openPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing DATABASE_URL: %w", err)
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "civicbase"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("creating connection pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to DATABASE_URL (host %s, database %s): %w", pc.ConnConfig.Host, pc.ConnConfig.Database, err)
	}
	return pool, nil
}

// prepare checks the server, applies migrations and sets up the publication
// and replica identities. Every failure here stops start-up.
func prepare(ctx context.Context, pool *pgxpool.Pool, cfg config.Config, log *slog.Logger) error {
	if err := cdc.Preflight(ctx, pool, cfg); err != nil {
		return fmt.Errorf("database is not ready for civicbase:\n%w", err)
	}
	if err := sql.Migrate(ctx, pool, log); err != nil {
		return err
	}
	if err := cdc.EnsureReplicaIdentity(ctx, pool, cfg, log); err != nil {
		return err
	}
	return cdc.EnsurePublication(ctx, pool, cfg, log)
}

// serve runs the service until ctx is canceled. onListening, when not nil,
// is called once the HTTP server listens and replication is streaming.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, onListening func()) error {
	pool, err := openPool(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := prepare(ctx, pool, cfg, log); err != nil {
		return err
	}

	cipher, err := delivery.NewCipher(cfg.EncryptionKey.Reveal())
	if err != nil {
		return err
	}
	st := store.New(pool)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reader := cdc.NewReader(cfg, pool, st, log.With("component", "cdc"))
	reader.SetMetrics(cdc.NewMetrics(reg))
	reg.MustRegister(cdc.NewSlotLostGauge(reader))
	reg.MustRegister(cdc.NewSlotCollector(pool, cfg.Slot, log.With("component", "cdc")))
	dispatcher := newDispatcher(cfg, st, cipher, delivery.NewMetrics(reg), log.With("component", "delivery"))
	queue := delivery.NewQueueCollector(pool, delivery.QueueConfig{Interval: cfg.Webhooks.QueueMetricsInterval}, log.With("component", "delivery"))
	reg.MustRegister(queue)
	// One limiter, so that an address blocked on the API is blocked on the
	// WebSocket hub too.
	authLimiter := authlimit.New(authlimit.Config{}, log.With("component", "authlimit"))
	app := httpapi.New(httpapi.Options{
		AdminToken: cfg.AdminToken, AuthLimiter: authLimiter, Events: st, Gatherer: reg, Logger: log.With("component", "httpapi"),
		Ready: readiness(pool, reader), Role: func() string { return reader.Status().Role }, Webhooks: st, Cipher: cipher, Guard: delivery.Guard{AllowPrivate: cfg.Dev},
		Catalog: catalog(cfg, pool), RotationGrace: cfg.Webhooks.RotationGrace,
	})
	realtime := hub.New(hub.Config{
		AdminToken: cfg.AdminToken, JWTSecret: cfg.JWTSecret, Catalog: catalog(cfg, pool),
		AllowedOrigins: cfg.AllowedOrigins, AuthLimiter: authLimiter, Metrics: hub.NewMetrics(reg),
	}, st, pool, log)
	defer realtime.Close() // Run closes it too; Close is safe twice
	srv := httpapi.NewServer(cfg.Addr, app, realtime)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on CIVICBASE_ADDR %s: %w", cfg.Addr, err)
	}
	log.InfoContext(ctx, "http server listening", "addr", ln.Addr().String())

	stopLog := context.AfterFunc(ctx, func() {
		log.Info("shutting down; a second SIGTERM or Ctrl-C stops at once", "timeout", cfg.ShutdownTimeout)
	})
	defer stopLog()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reader.Run(gctx) })
	g.Go(func() error { return dispatcher.Run(gctx) })
	g.Go(func() error { return queue.Run(gctx) })
	g.Go(func() error { return realtime.Run(gctx) })
	g.Go(func() error { return servehttp(gctx, srv, ln, cfg.ShutdownTimeout) })
	g.Go(func() error { return prune(gctx, st, cfg.Retention, log) })
	if onListening != nil {
		g.Go(func() error { return waitStreaming(gctx, reader, onListening) })
	}
	err = g.Wait()
	log.InfoContext(context.WithoutCancel(ctx), "shutdown complete", "lsn", reader.DurableLSN())
	return err
}

func servehttp(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving http: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down http server: %w", err)
	}
	<-errc
	return nil
}

func waitStreaming(ctx context.Context, reader *cdc.Reader, onListening func()) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if reader.Status().Streaming {
			onListening()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// prune deletes events and finished deliveries older than the retention, in
// small batches.
func prune(ctx context.Context, st *store.Store, retention time.Duration, log *slog.Logger) error {
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		cutoff := time.Now().Add(-retention)
		n, err := st.Prune(ctx, cutoff, 5000)
		if err == nil {
			var deliveries int64
			deliveries, err = st.PruneDeliveries(ctx, cutoff, 5000)
			n += deliveries
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.WarnContext(ctx, "pruning events failed; retrying later", "err", err)
		case n > 0:
			log.InfoContext(ctx, "pruned events and finished deliveries past retention", "count", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func readiness(pool *pgxpool.Pool, reader *cdc.Reader) func(context.Context) []httpapi.Check {
	return func(ctx context.Context) []httpapi.Check {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		checks := []httpapi.Check{{Name: "database", OK: true}, {Name: "migrations", OK: true}, {Name: "replication", OK: true}}
		// /readyz needs no token, so details name the problem without
		// echoing driver errors, which can carry host and user names.
		if err := pool.Ping(ctx); err != nil {
			checks[0] = httpapi.Check{Name: "database", Detail: "database unreachable; see the service log"}
		}
		if n, err := sql.Pending(ctx, pool); err != nil {
			checks[1] = httpapi.Check{Name: "migrations", Detail: "migration status unreadable; see the service log"}
		} else if n > 0 {
			checks[1] = httpapi.Check{Name: "migrations", Detail: fmt.Sprintf("%d migrations pending; run civicbase migrate", n)}
		}
		// A standby is ready: it serves the API, the hub and webhook
		// deliveries while another instance reads the slot.
		switch st := reader.Status(); {
		case errors.Is(st.Err, cdc.ErrSlotLost):
			checks[2] = httpapi.Check{Name: "replication", Detail: st.Err.Error()}
		case st.Role != cdc.RoleStandby && !st.Streaming:
			checks[2] = httpapi.Check{Name: "replication", Detail: "replication not streaming; the service is reconnecting, see its log"}
		}
		return checks
	}
}
