package cdc_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

type bundle struct {
	url   string
	pool  *pgxpool.Pool
	store *store.Store
	cfg   config.Config
	stop  func()
	// metrics, when set before start, is passed to the reader.
	metrics *cdc.Metrics
	// reader is the reader that start started.
	reader *cdc.Reader
}

func testLogger() *slog.Logger {
	if os.Getenv("CIVICBASE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// setup creates a database with schema, prepares it as the service does at
// start-up with the YAML configuration cfgYAML, and starts a reader that
// stops when the test ends.
func setup(t *testing.T, schema, cfgYAML string) *bundle {
	t.Helper()
	return setupOn(t, pgtest.NewDB(t), schema, cfgYAML)
}

// setupOn is setup on the database at url.
func setupOn(t *testing.T, url, schema, cfgYAML string) *bundle {
	t.Helper()
	ctx := context.Background()
	b := &bundle{url: url}
	pool, err := pgxpool.New(ctx, b.url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	b.pool = pool
	if schema != "" {
		_, err = pool.Exec(ctx, schema)
		require.NoError(t, err)
	}

	cfg, err := config.Parse([]byte(cfgYAML))
	require.NoError(t, err)
	cfg.DatabaseURL = config.Secret(b.url)
	cfg.StatusInterval = 200 * time.Millisecond
	// Slot names are unique per server, and the tests share one server.
	if cfg.Slot == "civicbase_slot" {
		var db string
		require.NoError(t, pool.QueryRow(ctx, "SELECT current_database()").Scan(&db))
		cfg.Slot = "slot_" + db
		if len(cfg.Slot) > 63 {
			cfg.Slot = cfg.Slot[:63]
		}
	}
	b.cfg = cfg
	log := testLogger()
	require.NoError(t, cdc.Preflight(ctx, pool, cfg))
	require.NoError(t, sql.Migrate(ctx, pool, log))
	require.NoError(t, cdc.EnsureReplicaIdentity(ctx, pool, cfg, log))
	require.NoError(t, cdc.EnsurePublication(ctx, pool, cfg, log))
	b.store = store.New(pool)
	b.start(t)
	return b
}

func (b *bundle) start(t *testing.T) {
	t.Helper()
	reader := cdc.NewReader(b.cfg, b.pool, b.store, testLogger())
	reader.SetMetrics(b.metrics)
	b.reader = reader
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reader.Run(ctx) }()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("reader did not stop within 30s of cancel")
		}
	}
	t.Cleanup(b.stop)
	waitFor(t, 20*time.Second, "reader streaming", func() bool { return reader.Status().Streaming })
}

func (b *bundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := b.pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

// waitEvents waits until at least n events are stored and returns all stored
// events, parsed.
func (b *bundle) waitEvents(t *testing.T, n int) []map[string]any {
	t.Helper()
	raw := b.rawEvents(t, n)
	out := make([]map[string]any, len(raw))
	for i, payload := range raw {
		require.NoError(t, json.Unmarshal([]byte(payload), &out[i]), payload)
	}
	return out
}

// rawEvents waits until at least n events are stored and returns all stored
// payloads as text.
func (b *bundle) rawEvents(t *testing.T, n int) []string {
	t.Helper()
	var events []store.Event
	waitFor(t, 30*time.Second, "events stored", func() bool {
		var err error
		events, err = b.store.List(context.Background(), "", 1_000_000)
		require.NoError(t, err)
		return len(events) >= n
	})
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = string(e.Payload)
	}
	return out
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
